from __future__ import annotations

import numpy as np
import pytest
import torch

from aestetik._model._io import arrays_to_state, load_weights, save_weights, state_to_arrays
from aestetik._model._network import AestetikNetwork


def test_weights_file_round_trip(tmp_path):
    torch.manual_seed(0)
    net = AestetikNetwork(4, 7, c_hid=8, latent_dim=4)
    arrays = state_to_arrays(net.state_dict())
    path = tmp_path / "model.pt"
    save_weights(path, arrays, {"window_size": 7, "c_hid": 8})
    back, config = load_weights(path)
    assert config == {"window_size": 7, "c_hid": 8}
    assert set(back) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    other = AestetikNetwork(4, 7, c_hid=8, latent_dim=4)
    other.load_state_dict(arrays_to_state(back))
    x = torch.rand(5, 4, 7, 7)
    net.eval()
    other.eval()
    torch.testing.assert_close(net(x)[0], other(x)[0])


def test_foreign_or_truncated_files_are_rejected(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an aestetik weights file"):
        load_weights(foreign)
    good = tmp_path / "good.pt"
    save_weights(good, {"w": np.zeros(3, np.float32)}, {})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated"):
        load_weights(truncated)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_not_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "aestetik-weights-v1", "config": {}, "state": _Payload()}, path)
    with pytest.raises(ValueError, match="not a readable aestetik weights file"):
        load_weights(path)
    assert "must never run" not in capsys.readouterr().out
