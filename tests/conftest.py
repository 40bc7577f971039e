"Every test runs offline: nothing is ever downloaded."
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
import torch
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
