"""GEOM section 5.5 (oneclass.methods.geom.ood): the two-headed WRN, ODIN's input perturbation and tuning, the
data split, and the notebook at its smoke preset."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oneclass.methods.geom import ood


def test_two_head_wrn_shares_its_features_between_the_heads():
    net = ood.TwoHeadWRN(10, 1, 72, 10, 3).eval()
    x = torch.randn(3, 3, 32, 32)
    t, c = net.both(x)
    assert t.shape == (3, 72) and c.shape == (3, 10)
    assert torch.allclose(net(x), t)                                    # GEOM scores the transformation head
    assert torch.allclose(c, net.class_head(net.features(x)))


class _Labelled:
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)


def test_odin_moves_the_input_against_the_gradient_of_its_loss_and_scores_the_moved_input():
    from oneclass.methods.geom.detector import prepare

    det = ood.ODIN(depth=10, widen=1, seed=0, batch_size=8, temperature=1000.0, epsilon=0.002)
    x = (torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    det.fit(_Labelled(x, torch.arange(24) % 4), epochs=1.0)
    v = prepare(x[:5])
    # the reference, by hand: the gradient of log S_yhat(x; T) with respect to x, yhat = argmax
    v_ = v.clone().requires_grad_(True)
    logp = F.log_softmax(det.net_(v_) / 1000.0, 1)
    logp.gather(1, logp.argmax(1, keepdim=True)).sum().backward()
    want = v + 2 * 0.002 * v_.grad.sign()                              # [-1, 1] units: 2 epsilon
    assert torch.allclose(det.perturb(v, 1000.0, 0.002), want)
    scores = det.score(x[:5]).scores
    p = F.softmax(det.net_(want) / 1000.0, 1).max(1).values.detach().numpy()
    np.testing.assert_allclose(-scores, p, rtol=1e-5)
    p0 = F.softmax(det.net_(v) / 1000.0, 1).max(1).values.detach().numpy()
    assert (p >= p0 - 1e-7).all()            # the move raises the max softmax (to first order): ODIN's premise


def test_fpr_at_95_tpr_by_hand_and_odin_tuning_picks_the_grid_minimum():
    inside = np.arange(1, 21) / 20.0                 # 0.05 ... 1.0; the 5% quantile is 0.0975
    outside = np.array([0.05, 0.09, 0.1, 0.5, 0.99])
    assert ood.fpr_at_tpr(inside, outside) == pytest.approx(3 / 5)   # 0.1, 0.5, 0.99 pass the threshold
    det = ood.ODIN(depth=10, widen=1, seed=0, batch_size=8, temperatures=[1, 100], epsilons=[0.0, 0.004])
    x = (torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    det.fit(_Labelled(x, torch.arange(24) % 4), epochs=1.0)
    with pytest.raises(RuntimeError, match="tune"):
        det.score(x[:2])
    det.tune(x[:12], 255 - x[12:])
    k = int(np.argmin(det.tuning_["fpr95"]))
    assert (det.temperature_, det.epsilon_) == (det.tuning_["temperature"][k], det.tuning_["epsilon"][k])
    assert len(det.tuning_["fpr95"]) == 4


def test_ood_split_holds_tuning_images_out_and_relabels_the_classes(tmp_path):
    import datagen

    datagen.write_cifar10_like(tmp_path, n_per_batch=20, n_test=60)
    datagen.write_tiny_imagenet_like(tmp_path, n_train=10)
    s = ood.ood_split("cifar10", "tiny_imagenet", ["cat", "airplane"], tune_size=5, seed=0, root=tmp_path)
    assert s.classes == ["cat", "airplane"] and set(s.train.labels.tolist()) <= {0, 1}
    cat = s.train.subset(s.train.labels == 0)
    assert len(cat) > 0
    images, anomaly = s.test()
    assert len(images) == len(s.test_in) + len(s.test_out) and anomaly.sum() == len(s.test_out)
    assert len(s.tune_in) == 5 and len(s.tune_out) == 5
    assert s.tune_out.paths and not set(s.tune_out.paths) & set(s.test_out.paths)   # tuning images never scored
    with pytest.raises(ValueError, match="tune_size"):
        ood.ood_split("cifar10", "tiny_imagenet", tune_size=10_000, root=tmp_path)


@pytest.mark.notebook
def test_geom_ood_notebook_smoke(tmp_path, tmp_path_factory):
    import pandas as pd

    import datagen
    from nbrun import run_smoke

    root = datagen.real_or_generated_root(tmp_path_factory)[0]
    runs = run_smoke("params/geom/ood.yaml", tmp_path, data_root=root)
    by = {r["params"]["parameters"]["method"]: r for r in runs}
    assert set(by) == {"geom", "odin"}
    for method, r in by.items():
        scores = pd.read_parquet(r["path"] / "scores.parquet")
        m = r["metrics"]
        assert len(scores) == m["n_in"] + m["n_out"] == 20 + 20
        assert 0 <= m["aupr_in_trapezoid"] <= 1 and m["steps"] >= 1
    assert by["odin"]["metrics"]["temperature"] in (1, 1000)
    assert by["odin"]["metrics"]["epsilon"] in (0.0, 0.002)
