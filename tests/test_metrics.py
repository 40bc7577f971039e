"Metrics: hand-computed fractions, agreement with torchmetrics, a verbatim float64 re-derivation of detectron2's SemSegEvaluator, merge/resume round trips and bad inputs."
import io, json, math
from fractions import Fraction as Fr
import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex
from torchmetrics.functional.classification import (binary_f1_score, binary_precision, binary_recall,
                                                    binary_jaccard_index)
from torchmetrics.functional.segmentation import dice_score

from digseg.metrics import ConfusionMatrix, binary_metrics, per_class_scores, as_label_map

IGN = 255


def random_batches(K, n=4, shape=(3, 17, 13), seed=0, p_ignore=0.1, p_void=0.0, absent=()):
    "Correlated random (pred, target) batches: target uniform over the classes not in `absent`, pred = target 60% of the time."
    g = torch.Generator().manual_seed(seed)
    classes = torch.tensor([c for c in range(K) if c not in absent])
    out = []
    for _ in range(n):
        t = classes[torch.randint(len(classes), shape, generator=g)]
        p = torch.where(torch.rand(shape, generator=g) < 0.6, t, torch.randint(K, shape, generator=g))
        t = t.masked_fill(torch.rand(shape, generator=g) < p_ignore, IGN)
        p = p.masked_fill(torch.rand(shape, generator=g) < p_void, -1)
        out.append((p, t))
    return out


# --- hand-computed example ------------------------------------------------------------------------------
GT = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, IGN], [2, 2, 2, 2]])
PR = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 2], [2, 2, 0, 0], [2, 2, 2, -1]])


def test_hand_computed_4x4():
    r = ConfusionMatrix(3).update(PR, GT).compute()
    # class 0: tp 3, gt 4, pred 4 -> IoU 3/5;  class 1: tp 3, gt 4, pred 4 -> 3/5
    # class 2: tp 5, gt 7 (one pixel predicted 'no class'), pred 6 -> 5/(7+6-5) = 5/8
    iou = [Fr(3, 5), Fr(3, 5), Fr(5, 8)]
    assert r["IoU"] == pytest.approx([float(x) for x in iou], abs=1e-15)
    assert r["mIoU"] == pytest.approx(float(sum(iou) / 3), abs=1e-15)
    assert r["precision"] == pytest.approx([3/4, 3/4, 5/6]); assert r["recall"] == pytest.approx([3/4, 3/4, 5/7])
    assert r["Dice"] == pytest.approx([6/8, 6/8, 10/13]); assert r["F1"] == pytest.approx(r["Dice"])
    assert r["pixel_accuracy"] == pytest.approx(11/15)
    assert r["fwIoU"] == pytest.approx(float((4*Fr(3, 5) + 4*Fr(3, 5) + 7*Fr(5, 8)) / 15))
    assert r["num_pixels"] == 15 and r["present"] == [True, True, True]


# --- torchmetrics agreement --------------------------------------------------------------------------
def test_confusion_matrix_and_iou_match_torchmetrics_over_batches():
    K = 5; cm = ConfusionMatrix(K)
    tcm = MulticlassConfusionMatrix(K, ignore_index=IGN); tj = MulticlassJaccardIndex(K, average=None, ignore_index=IGN)
    for p, t in random_batches(K):
        cm.update(p, t); tcm.update(p, t); tj.update(p, t)
    assert torch.equal(cm.matrix[:, :K], tcm.compute())
    assert cm.matrix[:, K].sum() == 0
    r = cm.compute()
    assert all(r["present"])
    torch.testing.assert_close(torch.tensor(r["IoU"], dtype=torch.float32), tj.compute())


def test_binary_matches_torchmetrics():
    g = torch.Generator().manual_seed(1)
    t = (torch.rand(4, 32, 32, generator=g) < 0.3).long()
    p = torch.where(torch.rand(4, 32, 32, generator=g) < 0.8, t, 1 - t)
    cm = ConfusionMatrix(2)
    for i in range(4): cm.update(p[i], t[i])                   # accumulated image by image
    b = cm.compute_binary(positive=1)
    torch.testing.assert_close(torch.tensor(b["F1"]), binary_f1_score(p, t))
    torch.testing.assert_close(torch.tensor(b["precision"]), binary_precision(p, t))
    torch.testing.assert_close(torch.tensor(b["recall"]), binary_recall(p, t))
    torch.testing.assert_close(torch.tensor(b["IoU"]), binary_jaccard_index(p, t))
    tm_dice = dice_score(p, t, num_classes=2, average="none", input_format="index", aggregation_level="global")
    torch.testing.assert_close(torch.tensor(b["Dice"]), tm_dice.reshape(-1)[1].float())
    assert binary_metrics(p.bool(), t) == pytest.approx(b)


def test_binary_ignore_matches_torchmetrics():
    g = torch.Generator().manual_seed(2)
    t = (torch.rand(2, 20, 20, generator=g) < 0.4).long()
    p = torch.where(torch.rand(2, 20, 20, generator=g) < 0.7, t, 1 - t)
    t = t.masked_fill(torch.rand(2, 20, 20, generator=g) < 0.2, IGN)
    b = binary_metrics(p, t)
    torch.testing.assert_close(torch.tensor(b["F1"]), binary_f1_score(p, t, ignore_index=IGN))
    torch.testing.assert_close(torch.tensor(b["IoU"]), binary_jaccard_index(p, t, ignore_index=IGN))


def test_mean_over_gt_classes_differs_from_torchmetrics_macro():
    K = 4; cm = ConfusionMatrix(K); tj = MulticlassJaccardIndex(K, average=None, ignore_index=IGN)
    for p, t in random_batches(K, absent=(3,)):                # class 3 predicted, never in the ground truth
        cm.update(p, t); tj.update(p, t)
    r = cm.compute(); tm = tj.compute().double()
    assert r["present"] == [True, True, True, False] and math.isnan(r["IoU"][3]) and tm[3] == 0
    assert cm.matrix[:, 3].sum() > 0
    assert r["mIoU"] == pytest.approx(float(tm[:3].mean()))    # ours/detectron2: mean over gt classes
    assert r["mIoU"] > float(tm.mean())                        # torchmetrics macro averages the 0 in


# --- detectron2 SemSegEvaluator, verbatim in float64 ---------------------------------------------------
def detectron2_semseg(batches, K, ignore_label=IGN, void_counts_as_gt=False):
    "detectron2/evaluation/sem_seg_evaluation.py process()+evaluate() (numpy, float64); rows pred, cols gt."
    conf = np.zeros((K + 1, K + 1), dtype=np.int64)
    for p, t in batches:
        pred = p.numpy().astype(np.int64).copy(); gt = t.numpy().astype(np.int64).copy()
        pred[pred == -1] = K                                   # our void label -> detectron2's extra row
        gt[gt == ignore_label] = K
        conf += np.bincount((K + 1) * pred.reshape(-1) + gt.reshape(-1), minlength=conf.size).reshape(conf.shape)
    acc = np.full(K, np.nan, dtype=np.float64); iou = np.full(K, np.nan, dtype=np.float64)
    tp = conf.diagonal()[:-1].astype(np.float64)
    rows = slice(None) if void_counts_as_gt else slice(None, -1)
    pos_gt = np.sum(conf[rows, :-1], axis=0).astype(np.float64)
    class_weights = pos_gt / np.sum(pos_gt)
    pos_pred = np.sum(conf[:-1, :-1], axis=1).astype(np.float64)
    acc_valid = pos_gt > 0
    acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
    union = pos_gt + pos_pred - tp
    iou_valid = np.logical_and(acc_valid, union > 0)
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    macc = np.sum(acc[acc_valid]) / np.sum(acc_valid)
    miou = np.sum(iou[iou_valid]) / np.sum(iou_valid)
    fiou = np.sum(iou[iou_valid] * class_weights[iou_valid])
    pacc = np.sum(tp) / np.sum(pos_gt)
    return dict(mIoU=100 * miou, fwIoU=100 * fiou, mACC=100 * macc, pACC=100 * pacc, IoU=100 * iou, ACC=100 * acc)


def assert_matches_detectron2(r, d):
    np.testing.assert_allclose(np.array(r["IoU"], dtype=np.float64), d["IoU"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(np.array(r["recall"], dtype=np.float64), d["ACC"], rtol=1e-12, equal_nan=True)
    for ours, theirs in (("mIoU", "mIoU"), ("fwIoU", "fwIoU"), ("mean_accuracy", "mACC"), ("pixel_accuracy", "pACC")):
        assert r[ours] == pytest.approx(d[theirs], rel=1e-12), ours


@pytest.mark.parametrize("K, absent", [(2, ()), (6, ()), (6, (0, 4)), (19, (1, 5, 7))])
def test_matches_detectron2_exactly(K, absent):
    batches = random_batches(K, n=5, seed=K, absent=absent)
    cm = ConfusionMatrix(K)
    for p, t in batches: cm.update(p, t)
    assert_matches_detectron2(cm.compute(percent=True), detectron2_semseg(batches, K))


def test_void_predictions_count_as_misses():
    "detectron2 never sees a prediction == K (argmax); we count it in pos_gt (a false negative), it would drop it."
    K = 4; batches = random_batches(K, seed=3, p_void=0.15)
    cm = ConfusionMatrix(K)
    for p, t in batches: cm.update(p, t)
    r = cm.compute(percent=True)
    assert_matches_detectron2(r, detectron2_semseg(batches, K, void_counts_as_gt=True))
    assert r["mIoU"] < detectron2_semseg(batches, K)["mIoU"]   # abstaining is not rewarded
    cm2 = ConfusionMatrix(K)                                   # pred == K is the same as void_label
    for p, t in batches: cm2.update(p.masked_fill(p == -1, K), t)
    assert torch.equal(cm.matrix, cm2.matrix)


def test_dataset_level_not_mean_of_images():
    a = (torch.tensor([[0, 0], [0, 0]]), torch.tensor([[0, 0], [0, 1]]))   # image 1: class 1 missed
    b = (torch.tensor([[1, 1], [1, 1]]), torch.tensor([[1, 1], [1, 1]]))   # image 2: perfect
    cm = ConfusionMatrix(2).update(*a).update(*b)
    assert cm.compute()["IoU"] == pytest.approx([3/4, 4/5])


# --- ignore, merge, resume -----------------------------------------------------------------------------
def test_ignore_label_excluded():
    K = 3; (p, t), = random_batches(K, n=1, p_ignore=0.3)
    p2 = torch.where(t == IGN, (p + 1) % K, p)                   # change predictions only where gt is ignored
    a, b = ConfusionMatrix(K).update(p, t), ConfusionMatrix(K).update(p2, t)
    assert torch.equal(a.matrix, b.matrix) and int(a.matrix.sum()) == int((t != IGN).sum())
    assert int(ConfusionMatrix(K, ignore_index=None).update(p, t.clamp(max=K - 1)).matrix.sum()) == t.numel()
    c = ConfusionMatrix(K, ignore_index=-100).update(p, t.masked_fill(t == IGN, -100))
    assert torch.equal(a.matrix, c.matrix)


def test_merge_and_state_dict_equal_single_pass():
    K = 7; batches = random_batches(K, n=6, seed=5, p_void=0.05)
    single = ConfusionMatrix(K)
    for p, t in batches: single.update(p, t)
    shards = [ConfusionMatrix(K) for _ in range(3)]
    for i, (p, t) in enumerate(batches): shards[i % 3].update(p, t)
    merged = shards[0].merge(shards[1]).merge(shards[2])
    assert torch.equal(merged.matrix, single.matrix) and merged.compute() == single.compute()
    first = ConfusionMatrix(K)
    for p, t in batches[:2]: first.update(p, t)
    buf = io.BytesIO(); torch.save(first.state_dict(), buf); buf.seek(0)
    resumed = ConfusionMatrix.from_state_dict(torch.load(buf))
    for p, t in batches[2:]: resumed.update(p, t)
    assert torch.equal(resumed.matrix, single.matrix)
    assert ConfusionMatrix(K).load_state_dict(single.state_dict()).compute() == single.compute()
    single.reset(); assert int(single.matrix.sum()) == 0


def test_inputs_numpy_uint8_bool_and_json():
    cm = ConfusionMatrix(3, class_names=["a", "b", "c"])
    cm.update(PR.clamp(min=0).numpy().astype(np.int32), GT.numpy().astype(np.uint8))
    ref = ConfusionMatrix(3).update(PR.clamp(min=0), GT)
    assert torch.equal(cm.matrix, ref.matrix) and cm.matrix.dtype == torch.int64
    r = ConfusionMatrix(2).update(np.eye(3, dtype=bool), np.eye(3, dtype=bool)).compute()
    assert r["mIoU"] == 1.0
    j = json.loads(ConfusionMatrix(4, class_names=list("wxyz")).update(PR, GT).to_json(percent=True))
    assert j["per_class"]["z"]["IoU"] is None and j["mIoU"] == pytest.approx(100 * (3/5 + 3/5 + 5/8) / 3)
    empty = ConfusionMatrix(2).compute()
    assert math.isnan(empty["mIoU"]) and json.loads(ConfusionMatrix(2).to_json())["mIoU"] is None


# --- bad inputs ----------------------------------------------------------------------------------------
Z = torch.zeros(4, 4, dtype=torch.long)


@pytest.mark.parametrize("make, err, msg", [
    (lambda: ConfusionMatrix(0), ValueError, "`num_classes` must be >= 1"),
    (lambda: ConfusionMatrix(2.0), TypeError, "`num_classes` must be an integer"),
    (lambda: ConfusionMatrix(3, ignore_index=2), ValueError, "`ignore_index` must not be a class label"),
    (lambda: ConfusionMatrix(3, void_label=1), ValueError, "`void_label` must not be a class label"),
    (lambda: ConfusionMatrix(3, class_names=["a", "b"]), ValueError, "`class_names` must be 3 strings"),
    (lambda: ConfusionMatrix(3).update(Z, Z[:3]), ValueError, "`pred` shape (4, 4) and `target` shape (3, 4) differ"),
    (lambda: ConfusionMatrix(3).update(Z.float(), Z), TypeError, "`pred` must hold integer labels"),
    (lambda: ConfusionMatrix(3).update(Z, Z.double()), TypeError, "`target` must hold integer labels"),
    (lambda: ConfusionMatrix(3).update(Z[0], Z[0]), ValueError, "`pred` must have shape (H, W) or (B, H, W)"),
    (lambda: ConfusionMatrix(3).update(Z.tolist(), Z), TypeError, "`pred` must be a numpy array or torch.Tensor"),
    (lambda: ConfusionMatrix(3).update(Z + 4, Z), ValueError, "`pred` contains label 4"),
    (lambda: ConfusionMatrix(3).update(Z - 2, Z), ValueError, "`pred` contains label -2"),
    (lambda: ConfusionMatrix(3, void_label=None).update(Z - 1, Z), ValueError, "`pred` contains label -1"),
    (lambda: ConfusionMatrix(3).update(Z, Z + 3), ValueError, "`target` contains label 3"),
    (lambda: ConfusionMatrix(3).update(Z, Z - 1), ValueError, "`target` contains label -1"),
    (lambda: ConfusionMatrix(3, ignore_index=None).update(Z, Z + 255), ValueError, "`target` contains label 255"),
    (lambda: ConfusionMatrix(3).compute_binary(positive=3), ValueError, "`positive` must be <= 2"),
    (lambda: ConfusionMatrix(3).merge(ConfusionMatrix(2)), ValueError, "`num_classes` 2"),
    (lambda: ConfusionMatrix(3).merge(ConfusionMatrix(3, void_label=None)), ValueError, "`void_label` None"),
    (lambda: ConfusionMatrix(3).merge(Z), TypeError, "`other` must be a ConfusionMatrix"),
    (lambda: ConfusionMatrix(3).load_state_dict({**ConfusionMatrix(3).state_dict(), "matrix": torch.zeros(3, 4)}),
     ValueError, "non-negative int64"),
    (lambda: ConfusionMatrix(3).load_state_dict(ConfusionMatrix(4).state_dict()), ValueError, "`num_classes` 4"),
    (lambda: binary_metrics(Z + 3, Z), ValueError, "`pred` contains label 3"),
])
def test_bad_inputs(make, err, msg):
    with pytest.raises(err) as e: make()
    assert msg in str(e.value)
