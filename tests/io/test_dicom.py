"""DICOM: rescale and window as a viewer applies them, the window recorded, bad files one line."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from make_run import make_inputs  # noqa: E402

from advexplorer.cli import main  # noqa: E402
from advexplorer.errors import UserError  # noqa: E402
from advexplorer.io.dicom import is_dicom_file, parse_window, read_dicom  # noqa: E402


def write_ct(path: Path, stored: np.ndarray, *, window=(40, 400), photometric="MONOCHROME2",
             pixels=True, syntax=None) -> Path:
    """A single-frame CT slice: stored uint16 values, slope 2, intercept −1024 (so HU = 2v − 1024)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if pixels:
        ds.PixelData = stored.astype(np.uint16).tobytes()
        if meta.TransferSyntaxUID.is_compressed:  # bytes that claim to be compressed, but are not
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([ds.PixelData])
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def stored():
    y, x = np.mgrid[0:24, 0:20]
    return (400 + 20 * x + 5 * y).astype(np.uint16)  # HU −224 … +430


def test_rescale_then_window_from_the_file_or_given(tmp_path, stored):
    path = write_ct(tmp_path / "ct.dcm", stored)
    assert is_dicom_file(path)
    hounsfield = stored.astype(np.float64) * 2 - 1024
    image = read_dicom(path)
    assert image.window == (40.0, 400.0) and image.window_source == "file"
    expected = np.clip((hounsfield - (40 - 200)) / 400, 0, 1)
    np.testing.assert_allclose(image.pixels[:, :, 0], expected, atol=1e-6)
    given = read_dicom(path, (0.0, 100.0))
    np.testing.assert_allclose(given.pixels[:, :, 0], np.clip((hounsfield + 50) / 100, 0, 1), atol=1e-6)
    assert given.window_source == "given"
    # No window in the file: the image's range, said in the notes.
    bare = read_dicom(write_ct(tmp_path / "bare.dcm", stored, window=None))
    assert bare.pixels.min() == 0 and bare.pixels.max() == 1 and "no window" in " ".join(bare.notes)
    # MONOCHROME1 (white = low) is inverted, so bright still means dense.
    inverted = read_dicom(write_ct(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted.pixels[:, :, 0], 1 - expected, atol=1e-6)
    with pytest.raises(UserError, match="CENTRE,WIDTH"):
        parse_window("40")
    with pytest.raises(UserError, match="width above 0"):
        parse_window("40,0")


def test_bad_dicom_files_are_one_line_naming_the_file(tmp_path, stored):
    from pydicom.uid import JPEG2000Lossless

    with pytest.raises(UserError, match="empty.dcm has no pixel data"):
        read_dicom(write_ct(tmp_path / "empty.dcm", stored, pixels=False))
    # Pixel data that claims JPEG 2000 but holds raw bytes: undecodable, and said so.
    with pytest.raises(UserError, match=r"j2k.dcm: its pixels could not be decoded \(transfer syntax") as error:
        read_dicom(write_ct(tmp_path / "j2k.dcm", stored, syntax=JPEG2000Lossless))
    assert "\n" not in str(error.value)
    (tmp_path / "text.dcm").write_text("hello")
    with pytest.raises(UserError, match="text.dcm is not a readable DICOM file"):
        read_dicom(tmp_path / "text.dcm")


def test_the_window_is_recorded_and_reproduced(tmp_path, stored, capsys):
    inputs = make_inputs(tmp_path / "inputs")
    path = write_ct(tmp_path / "ct.dcm", stored)
    run_dir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["attack", "--model", str(inputs["model"]), "--device", "cpu", "--image", str(path),
                     "--dicom-window", "0,300", "--steps", "2", "--seed", "1", "--quiet",
                     "--out", str(run_dir)]) == 0
        record = json.loads((run_dir / "record.json").read_text())
        assert record["image"]["dicom"] == {"window": [0.0, 300.0], "window_source": "given", "modality": "CT"}
        assert any("DICOM window centre 0, width 300" in note for note in record["image"]["notes"])
        capsys.readouterr()
        assert main(["reproduce", str(run_dir)]) == 0
    assert "MATCH" in capsys.readouterr().out
