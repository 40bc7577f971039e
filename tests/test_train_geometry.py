"""A training crop sees the pixel scale of the evaluation windows of the same image (issue: train and test scales).

An image whose white square has a known side goes through the test protocol (`predict.resize_image` at the
protocol's shorter side, then a window from `slide_windows`) and through the training augmentation at the
same benchmark's `train_geometry` (no jitter, no flip): the square has the same side in both."""
import pytest
import torch
from digseg.benchmarks import eval_protocol, train_geometry
from digseg.data import augment
from digseg.predict import resize_image, resized_size, slide_windows


def square_side(label: torch.Tensor):
    rows, cols = (label == 1).any(1).nonzero(), (label == 1).any(0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("name,method,H,W", [("ade150", "digseg", 384, 512), ("refuge2", "digseg", 600, 600),
                                             ("deepglobe", "digseg", 700, 700), ("cityscapes", "digseg", 256, 512),
                                             ("ade150", "dedos", 480, 640)])
def test_training_crop_and_test_window_share_the_pixel_scale(name, method, H, W):
    label = torch.zeros(H, W, dtype=torch.long); label[H//2 - 60:H//2 + 60, W//2 - 60:W//2 + 60] = 1   # a 120-pixel square
    image = torch.stack([label.float()]*3)
    p = eval_protocol(name, method)
    h, w = resized_size(H, W, p.get("resize_short"))
    test_label = (resize_image(image, (h, w))[0] > 0.5).long()
    if p.get("mode") == "slide":   # the window holding the square's centre
        t, l, wh, ww = next(win for win in slide_windows(h, w, p["crop_size"], p["stride"])
                            if win[0] <= h//2 < win[0] + win[2] and win[1] <= w//2 < win[1] + win[3])
        test_label = test_label[t:t + wh, l:l + ww]
    crop = max(h, w)   # a crop holding the whole resized image, so the square is never cut
    _, train_label = augment(image, label, crop, torch.Generator().manual_seed(0), flip=False, scale=(1, 1),
                             **train_geometry(name, method))
    side_test, side_train = square_side(test_label), square_side(train_label)
    assert abs(side_test[0] - side_train[0]) <= 1 and abs(side_test[1] - side_train[1]) <= 1, (side_test, side_train)
    expected = 120 * (p["resize_short"] / min(H, W) if p.get("resize_short") else 1)
    assert abs(side_train[0] - expected) <= 1.5                                       # and it is the protocol's scale


def test_the_check_tells_scales_apart():
    "Trained at native scale, an ADE20K-shaped image would not match its test windows: the comparison above can fail."
    H, W = 384, 512
    label = torch.zeros(H, W, dtype=torch.long); label[132:252, 196:316] = 1
    h, w = resized_size(H, W, eval_protocol("ade150")["resize_short"])
    test_side = square_side((resize_image(torch.stack([label.float()]*3), (h, w))[0] > 0.5).long())
    _, native = augment(torch.stack([label.float()]*3), label, 512, torch.Generator().manual_seed(0), flip=False, scale=(1, 1))
    assert test_side[0] - square_side(native)[0] >= 30      # 160 against 120 pixels
