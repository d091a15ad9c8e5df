"""The shipped water-rpbe-d3 model on DFT frames it never saw (pool19 frames 13–18)."""
import numpy as np
import pytest

import aptnn
from aptnn.evaluate import metrics
from aptnn.io import read_frames
from aptnn.model.checkpoint import shipped_models


@pytest.fixture(scope="module")
def model():
    return aptnn.load_model("water-rpbe-d3")


def test_shipped_model_is_listed_and_documented(model):
    assert "water-rpbe-d3" in shipped_models()
    assert model.species == [1, 8] and model.cutoff == 6.0
    assert model.training["description"]


def test_shipped_model_accuracy_on_held_out_frames(model, shared_data):
    frames = read_frames(shared_data / "pool19.extxyz", index="13:")
    m = metrics(frames, model.predict_batch(frames)[0])
    assert m["n_atoms"] == 6 * 384
    assert m["rmse_e"] <= 0.025
    # index convention P[ξ,ζ] = ∂M_ξ/∂r_ζ: the labels' antisymmetric part is reproduced, not its mirror
    assert m["rmse_e"] < 0.8 * m["rmse_transposed_e"]


def test_shipped_model_float64_agrees_and_sum_rule_holds(model, shared_data):
    atoms = read_frames(shared_data / "pool19.extxyz", index=13)[0]
    p32 = model.predict(atoms)
    p64 = aptnn.load_model("water-rpbe-d3", dtype="float64").predict(atoms)
    np.testing.assert_allclose(p32, p64, atol=2e-4)
    np.testing.assert_allclose(p64.sum(0), np.zeros((3, 3)), atol=1e-9)
