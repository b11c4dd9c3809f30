"""`ray job submit` entrypoint for the labeling job.

    ray job submit --runtime-env jobs/runtime_env.yaml --working-dir . -- \
        python jobs/label.py --config production --input s3://corpus/manifest.parquet --output s3://labels/run1
"""

import sys

from ray_ser.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
