"""Start-up shim for the subprocesses of the CLI's --gpus tests (on PYTHONPATH there only).

diffusers 0.42.1's enable_parallelism picks each rank's device as rank %
torch.accelerator.device_count(), which is 0 on a CPU-only torch: these CPU tests stand in
a count of 1. Real GPU runs need nothing of this.
"""

import torch

if torch.accelerator.device_count() == 0:
    torch.accelerator.device_count = lambda: 1
