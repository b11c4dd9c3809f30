"""`ray job submit` entrypoint for few-shot LoRA adaptation of a trained speech_llm branch.

    ray job submit --runtime-env jobs/runtime_env.yaml -- \
        python jobs/adapt.py --config production --branch selm --out s3://checkpoints/adapted \
            --set branches.selm.checkpoint=s3://checkpoints/selm/.../branch \
            --set branches.selm.few_shot.manifest=s3://newdomain/shots.csv
"""

import sys

from _entry import run

if __name__ == "__main__":
    sys.exit(run("adapt", sys.argv[1:]))
