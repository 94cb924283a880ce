"""Loaders on real files: NWB (units, ROI responses) with pynwb, NIfTI with nibabel, arrays."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from neuronatlas.brain import load_arrays, load_nifti, load_nwb, load_recording
from neuronatlas.errors import DataError

STIMULI = ["cat", "dog", "fish"]


def _nwb_file(path, *, with_roi=False):
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(session_description="test session", identifier="id-1",
                  session_start_time=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    dev = nwb.create_device(name="probe")
    for loc in ("V1", "V4"):
        group = nwb.create_electrode_group(name=f"shank-{loc}", description="", location=loc,
                                           device=dev)  # fmt: skip
        nwb.add_electrode(location=loc, group=group)
    nwb.add_trial_column(name="stimulus", description="what was shown")
    # 6 trials: each stimulus twice, 1 s long, 0.5 s apart
    order = ["cat", "dog", "fish", "fish", "cat", "dog"]
    for i, s in enumerate(order):
        nwb.add_trial(start_time=1.5 * i, stop_time=1.5 * i + 1.0, stimulus=s)
    # unit 0 (V1): 3 spikes in every "cat" trial, 1 in others; unit 1 (V4): 2 spikes in "dog"
    spikes0, spikes1 = [], []
    for i, s in enumerate(order):
        t0 = 1.5 * i
        spikes0 += [t0 + 0.1, t0 + 0.2, t0 + 0.3] if s == "cat" else [t0 + 0.5]
        spikes1 += [t0 + 0.1, t0 + 0.9] if s == "dog" else []
        spikes0.append(t0 + 1.2)  # between trials: not counted
    nwb.add_unit(spike_times=spikes0, electrodes=[0])
    nwb.add_unit(spike_times=spikes1, electrodes=[1])
    if with_roi:
        from pynwb.ophys import ImageSegmentation, OpticalChannel, RoiResponseSeries

        ch = OpticalChannel(name="ch", description="", emission_lambda=500.0)
        plane = nwb.create_imaging_plane(name="plane", optical_channel=ch, description="",
                                         device=dev, excitation_lambda=900.0, indicator="GCaMP",
                                         location="V1", imaging_rate=10.0)  # fmt: skip
        ophys = nwb.create_processing_module(name="ophys", description="")
        seg = ImageSegmentation()
        ophys.add(seg)
        ps = seg.create_plane_segmentation(name="ps", description="", imaging_plane=plane)
        for k in range(2):
            mask = np.zeros((4, 4))
            mask[k, k] = 1
            ps.add_roi(image_mask=mask)
        rois = ps.create_roi_table_region(region=[0, 1], description="both")
        times = np.arange(0, 9.0, 0.1)
        data = np.stack([times, -times], axis=1)
        ophys.add(RoiResponseSeries(name="dff", data=data, rois=rois, unit="1",
                                    timestamps=times))  # fmt: skip
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return order


def test_nwb_units_are_binned_per_trial(tmp_path):
    order = _nwb_file(tmp_path / "s.nwb")
    rec = load_nwb(tmp_path / "s.nwb")
    assert rec.sites == ["V1", "V4"]
    assert rec.stimuli["name"].tolist() == ["cat", "dog", "fish"]
    expect0 = [3.0 if s == "cat" else 1.0 for s in order]
    expect1 = [2.0 if s == "dog" else 0.0 for s in order]
    np.testing.assert_allclose(rec.responses[:, 0], expect0)  # spikes/s in 1 s windows
    np.testing.assert_allclose(rec.responses[:, 1], expect1)
    np.testing.assert_array_equal(rec.repeats_per_stimulus(), [2, 2, 2])
    np.testing.assert_allclose(rec.mean_responses()[:, 0], [3.0, 1.0, 1.0])
    assert rec.description["format"] == "nwb"
    # a latency offset shifts the windows: the between-trial spike at +1.2 s now counts
    shifted = load_nwb(tmp_path / "s.nwb", offset=0.4)
    assert shifted.responses[0, 0] == pytest.approx(1.0)  # 1.2 in [0.4, 1.4); 0.1-0.3 not
    with pytest.raises(DataError, match="no intervals table 'epochs'"):
        load_nwb(tmp_path / "s.nwb", intervals="epochs")
    with pytest.raises(DataError, match="'image'"):
        load_nwb(tmp_path / "s.nwb", stimulus_column="image")


def test_nwb_roi_responses_average_each_window(tmp_path):
    _nwb_file(tmp_path / "r.nwb", with_roi=True)
    rec = load_nwb(tmp_path / "r.nwb", responses="roi")
    assert rec.sites == ["V1"] and rec.n_units == 2
    times = np.arange(0, 9.0, 0.1)
    for i in range(6):
        inside = (times >= 1.5 * i) & (times < 1.5 * i + 1.0)
        assert rec.responses[i, 0] == pytest.approx(times[inside].mean(), rel=1e-6)
        assert rec.responses[i, 1] == pytest.approx(-times[inside].mean(), rel=1e-6)


def _nifti(tmp_path, n_vol=12, tr=2.0):
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 4, 2, n_vol)).astype(np.float32)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_zooms((2.0, 2.0, 2.0, tr))
    labels = np.zeros((3, 4, 2), dtype=np.int16)
    labels[0, :2, 0] = 1
    labels[2, 3, 1] = 2
    nib.save(img, tmp_path / "bold.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "mask.nii.gz")
    return data, labels


def test_nifti_voxels_in_mask_per_volume_and_per_event(tmp_path):
    data, _ = _nifti(tmp_path)
    rec = load_nifti(tmp_path / "bold.nii.gz", tmp_path / "mask.nii.gz", labels={1: "V1"})
    assert rec.sites == ["V1", "region 2"]
    assert rec.n_trials == 12 and rec.n_units == 3
    np.testing.assert_allclose(rec.responses[:, 0], data[0, 0, 0])
    np.testing.assert_allclose(rec.responses[:, 2], data[2, 3, 1])
    assert rec.units["name"].tolist()[2] == "voxel 2,3,1"
    events = pd.DataFrame({"onset": [0.0, 8.0, 14.0], "duration": [4.0, 4.0, 2.0],
                           "stimulus": ["a", "b", "a"]})  # fmt: skip
    ev = load_nifti(tmp_path / "bold.nii.gz", tmp_path / "mask.nii.gz", events=events,
                    hrf_delay=4.0)  # fmt: skip
    # event 0: [4, 8) s -> volumes 2, 3 (t = 2 i); event 1: [12, 16) -> 6, 7; event 2: [18, 20) -> 9
    v = data[0, 0, 0]
    np.testing.assert_allclose(ev.responses[:, 0], [v[2:4].mean(), v[6:8].mean(), v[9]], rtol=1e-6)
    assert ev.trial_stimulus.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match="cover no volume"):
        load_nifti(tmp_path / "bold.nii.gz", tmp_path / "mask.nii.gz",
                   events=pd.DataFrame({"onset": [100.0], "duration": [1.0], "stimulus": ["a"]}))  # fmt: skip


def test_arrays_npz_parquet_csv_agree(tmp_path):
    rng = np.random.default_rng(1)
    resp = rng.standard_normal((8, 3)).astype(np.float32)
    labels = np.array(["b", "a", "c", "a", "b", "c", "a", "b"])
    stim = pd.DataFrame({"name": ["a", "b", "c"], "text": ["A.", "B.", "C."]})
    np.savez(tmp_path / "r.npz", responses=resp, stimulus=labels, site=np.array(["x", "x", "y"]))
    wide = pd.DataFrame(resp, columns=["u0", "u1", "u2"])
    wide.insert(0, "stimulus", labels)
    wide.to_parquet(tmp_path / "r.parquet")
    wide.to_csv(tmp_path / "r.csv", index=False)
    stim.to_csv(tmp_path / "stim.csv", index=False)
    recs = [load_recording(tmp_path / f, stimuli=tmp_path / "stim.csv")
            for f in ("r.npz", "r.parquet", "r.csv")]  # fmt: skip
    for rec in recs:
        np.testing.assert_allclose(rec.responses, resp, rtol=1e-6)
        assert rec.trial_stimulus.tolist() == [1, 0, 2, 0, 1, 2, 0, 1]
        assert rec.stimuli["text"].tolist() == ["A.", "B.", "C."]
    assert recs[0].sites == ["x", "y"] and recs[1].units["name"].tolist() == ["u0", "u1", "u2"]
    reps = recs[0].repeats()
    assert reps.shape == (3, 3, 3)
    np.testing.assert_allclose(reps[:, 0], resp[[1, 3, 6]])  # stimulus "a", trial order
    assert np.isnan(reps[2, 2]).all()  # "c" has 2 trials
    with pytest.raises(DataError, match="not in the stimulus table"):
        load_arrays({"responses": resp, "stimulus": labels}, stimuli=stim.iloc[:2])
    with pytest.raises(DataError, match="Cannot tell the format"):
        load_recording(tmp_path / "stim.txt")
