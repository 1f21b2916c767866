"""GGUF tensor data in C: dequantization of every type pyllm reads equals the gguf package's
reference bit for bit on random valid blocks (any quant bytes, any finite f16 scales), and
Q8_0/Q4_0/Q4_1 blocks taken into pyllm's own weight layout without re-quantizing give the same
values through pyllm's own dequantization."""
import numpy as np
import pytest

import gguf
import gguf.quants as gguf_quants
from gguf import GGMLQuantizationType as GGML

import pyllm
import pyllm._testing
from pyllm.gguf import GGML_TYPES, open_gguf
from gguf_files import ALL_TYPES, random_tensor_bytes, write_gguf


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_dequantize_equals_gguf_reference_bit_for_bit(qtype, rows):
    rng = np.random.default_rng(int(qtype) * 100 + rows)
    k = 512
    raw = random_tensor_bytes(rng, qtype, rows, k)
    ref = gguf_quants.dequantize(raw, qtype)
    ours = pyllm._core._gguf_dequantize(int(qtype), raw, rows * k).reshape(rows, k)
    assert ref.shape == ours.shape == (rows, k)
    mismatch = np.flatnonzero(_bits(ours) != _bits(ref))
    assert mismatch.size == 0, f"{qtype.name}: {mismatch.size} values differ, first at {mismatch[:5]}"
    assert np.isfinite(ours).all()


def test_dequantize_uses_every_bit_of_a_block():
    """Flipping any single bit of a Q6_K/Q5_K/Q4_K block changes the output (no field ignored)."""
    rng = np.random.default_rng(7)
    for qtype in (GGML.Q4_K, GGML.Q5_K, GGML.Q6_K, GGML.Q5_0, GGML.Q5_1):
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = random_tensor_bytes(rng, qtype, 1, block)
        base = pyllm._core._gguf_dequantize(int(qtype), raw, block)
        for byte in range(size):
            for bit in range(8):
                flipped = raw.copy()
                flipped[0, byte] ^= 1 << bit
                ref = gguf_quants.dequantize(flipped, qtype).reshape(-1)
                ours = pyllm._core._gguf_dequantize(int(qtype), flipped, block)
                assert np.array_equal(_bits(ours), _bits(ref)), (qtype.name, byte, bit)
        assert base.std() > 0


@pytest.mark.parametrize("lanes16", [False, True], ids=["plain", "lanes16"])
@pytest.mark.parametrize("qtype", [GGML.Q8_0, GGML.Q4_0, GGML.Q4_1], ids=lambda t: t.name)
def test_blocks_into_pyllm_layout_without_requantizing(qtype, lanes16):
    """Both layouts: the plain one and the AVX-512 kernels' lane order (whole and short groups)."""
    rng = np.random.default_rng(int(qtype))
    for rows, k in [(1, 32), (5, 96), (3, 544), (33, 2048)]:
        raw = random_tensor_bytes(rng, qtype, rows, k)
        ref = gguf_quants.dequantize(raw, qtype)
        ours = pyllm._testing.gguf_qweight_roundtrip(int(qtype), raw, rows, k, lanes16)
        assert np.array_equal(_bits(ours), _bits(ref)), f"{qtype.name} [{rows}, {k}]"
    # and blocks the gguf package quantized from real-looking weights
    w = rng.standard_normal((16, 256)).astype(np.float32) * rng.uniform(0.01, 3, (16, 1)).astype(np.float32)
    q = gguf_quants.quantize(w, qtype)
    assert np.array_equal(_bits(pyllm._testing.gguf_qweight_roundtrip(int(qtype), q, 16, 256, lanes16)),
                          _bits(gguf_quants.dequantize(q, qtype)))


def test_entry_points_check_their_input():
    raw = np.zeros(34, np.uint8)
    with pytest.raises(ValueError, match="not one pyllm dequantizes"):
        pyllm._core._gguf_dequantize(int(GGML.IQ2_XXS), raw, 256)
    with pytest.raises(ValueError, match="whole number"):
        pyllm._core._gguf_dequantize(int(GGML.Q8_0), raw, 31)
    with pytest.raises(ValueError, match="buffer has 34"):
        pyllm._core._gguf_dequantize(int(GGML.Q8_0), raw, 64)
    with pytest.raises(ValueError, match="no pyllm layout"):
        pyllm._testing.gguf_qweight_roundtrip(int(GGML.Q5_0), np.zeros(22, np.uint8), 1, 32)


def test_type_table_matches_gguf_package():
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        if int(qtype) in GGML_TYPES:
            name, ours_block, ours_size = GGML_TYPES[int(qtype)]
            assert (name, ours_block, ours_size) == (qtype.name, block, size)
    for type_id in GGML_TYPES:
        assert GGML(type_id).name == GGML_TYPES[type_id][0]


def test_file_of_every_type_reads_and_dequantizes(tmp_path):
    """A file the gguf package writes, one tensor per type (and a 3-D one), custom alignment:
    our infos and views equal GGUFReader's, and dequantize() equals the reference."""
    rng = np.random.default_rng(11)
    tensors, expected = [], {}
    for i, qtype in enumerate(ALL_TYPES):
        raw = random_tensor_bytes(rng, qtype, 3 + i, 256)
        name = f"blk.{i}.{qtype.name.lower()}.weight"
        if qtype == GGML.F32:
            tensors.append((name, raw.view(np.float32), None))
        elif qtype == GGML.F16:
            tensors.append((name, raw.view(np.float16), None))
        else:
            tensors.append((name, raw, qtype))
        expected[name] = (qtype, gguf_quants.dequantize(raw, qtype))
    cube = rng.standard_normal((2, 3, 64)).astype(np.float32)
    tensors.append(("cube", cube, None))
    path = write_gguf(tmp_path / "types.gguf", [("general.name", "types")], tensors, alignment=64)

    f = open_gguf(path)
    assert f.alignment == 64 and f.version == 3
    reader = gguf.GGUFReader(path)
    assert [t.name for t in reader.tensors] == list(f.tensors)
    for t in reader.tensors:
        mine = f.tensors[t.name]
        assert mine.type_id == int(t.tensor_type)
        assert mine.ne == tuple(int(d) for d in t.shape)
        assert mine.offset == int(t.data_offset)
        assert mine.nbytes == int(t.n_bytes)
        assert np.array_equal(f.tensor_bytes(t.name), t.data.reshape(-1).view(np.uint8))
    for name, (qtype, ref) in expected.items():
        assert np.array_equal(_bits(f.dequantize(name)), _bits(ref)), name
    assert f.tensors["cube"].shape == (2, 3, 64)
    assert np.array_equal(f.tensor_array("cube"), cube)
    view = f.tensor_array("cube")
    assert not view.flags.writeable and not view.flags.owndata  # a view into the mapped file
