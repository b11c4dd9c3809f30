"""`ray job submit` entrypoint for fine-tuning branches with Ray Train (several --branch: side by side).

    ray job submit --runtime-env jobs/runtime_env.yaml -- \
        python jobs/train.py --config production --branch wavlm --branch text_llm \
            --manifest s3://corpus/train.parquet --out s3://checkpoints/
"""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("train", sys.argv[1:]))
