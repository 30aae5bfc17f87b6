"""Data-parallel fine-tuning with torchrun: the same script trains in one process or in several.

Under ``torchrun`` every process (rank) loads the same data and ``fit`` trains with DistributedDataParallel:
each step gives every rank ``batch_size`` texts, the ranks' keys and labels are gathered for the contrastive
loss and the queue, and all ranks end with the same model, which rank 0 scores and saves. A subset of the
shipped corpus, one epoch: about 20 s on two idle CPU cores::

    python examples/torchrun_training.py                              # one process
    torchrun --nproc_per_node=2 examples/torchrun_training.py         # 2 processes (GPUs, or Gloo on CPUs)
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d \\
        --rdzv_endpoint=node0.example.org:29400 examples/torchrun_training.py   # on each of 2 machines

See the "Scaling out" guide (docs/guide/scaling_out.md).
"""

import os

from sklearn.model_selection import train_test_split

from skcarl import CARLRegressor
from skcarl.datasets import load_affect_demo
from skcarl.distributed import is_main_process

data = load_affect_demo().sample(n=160, random_state=0)  # every rank: the same texts, the same split
X_train, X_test, y_train, y_test = train_test_split(
    data["text"], data[["valence", "arousal"]].to_numpy(), test_size=0.25, random_state=0
)

world_size = int(os.environ.get("WORLD_SIZE", 1))
model = CARLRegressor(va_range=(1, 9), max_epochs=1, max_length=48, batch_size=16 // world_size, random_state=0)
model.fit(X_train, y_train)  # data-parallel when torchrun started this script

if is_main_process():  # the ranks hold the same model: score and save it once
    print(f"Trained on {world_size} process(es), {model.batch_size * world_size} texts per step, "
          f"in {model.fit_time_:.1f} s on {model.device_}")
    print(f"Held-out R^2: {model.score(X_test, y_test):.3f}")
    print(f"Saved to {model.save('torchrun-model')}")
