"""`ray job submit` entrypoint for the labeling job.

    ray job submit --runtime-env jobs/runtime_env.yaml -- \
        python jobs/label.py --config production --input s3://corpus/manifest.parquet --output s3://labels/run1
"""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("label", sys.argv[1:]))
