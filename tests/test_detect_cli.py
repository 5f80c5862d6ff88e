import argparse
import json

import numpy as np
import onnx
import pytest

import edgeguard.cli.demo
from _detect_world import World
from edgeguard import Guard, Profile
from edgeguard.cli import EXIT_ERROR, main
from edgeguard.cli.demo import run_detector_demo
from edgeguard.cli.profile import add_profile_parser, add_seal_arguments, profile_section, run_profile
from edgeguard.errors import ProfileError


def parse(argv):
    parser = argparse.ArgumentParser(prog="edgeguard")
    add_profile_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def benign_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "benign.npy"
    np.save(path, World().benign(300, np.random.default_rng(0)))
    return path


def test_profile_command_writes_a_loadable_profile(benign_npy, tmp_path, capsys):
    out = tmp_path / "p.egprofile"
    args = parse(["profile", str(benign_npy), "-o", str(out), "--target-fpr", "0.02", "--volume-budget", "900",
                  "--sketch-dim", "12", "--domain", "0", "1"])
    assert run_profile(args) == 0
    profile = Profile.load(out)
    assert profile.calibration["target_fpr"] == 0.02 and profile.thresholds[5] == 900
    assert profile.hi == pytest.approx(1.25) and profile.classes == 0
    assert "signals armed" in capsys.readouterr().out


def test_profile_command_with_model_arms_the_output_signal(benign_npy, tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(World().onnx_model(), model)
    out = tmp_path / "p.egprofile"
    assert run_profile(parse(["profile", str(benign_npy), "-o", str(out), "--model", str(model),
                              "--sketch-dim", "12"])) == 0
    profile = Profile.load(out)
    assert profile.classes == 10 and profile.input_name == "x" and profile.thresholds[3] != float("inf")


@pytest.mark.parametrize("content, message", [(b"not numpy", "cannot read"), (None, "cannot read")])
def test_profile_command_reports_unreadable_input(tmp_path, capsys, content, message):
    src = tmp_path / "in.npy"
    if content is not None:
        src.write_bytes(content)
    assert main(["profile", str(src), "-o", str(tmp_path / "p")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("edgeguard: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def test_profile_command_reports_unusable_data(tmp_path, capsys):
    src = tmp_path / "few.npy"
    np.save(src, np.zeros((5, 8), np.float32))
    assert main(["profile", str(src), "-o", str(tmp_path / "p")]) == EXIT_ERROR
    assert "at least 64" in capsys.readouterr().err


def test_seal_option_yields_the_canonical_section(benign_npy, tmp_path):
    out = tmp_path / "p.egprofile"
    assert run_profile(parse(["profile", str(benign_npy), "-o", str(out), "--sketch-dim", "12"])) == 0
    parser = argparse.ArgumentParser()
    add_seal_arguments(parser)
    assert profile_section(parser.parse_args([])) is None
    assert profile_section(parser.parse_args(["--detector-profile", str(out)])) == out.read_bytes()
    (tmp_path / "bad").write_bytes(b"EGDPROF\0junk")
    with pytest.raises(ProfileError):
        profile_section(parser.parse_args(["--detector-profile", str(tmp_path / "bad")]))


def test_demo_alerts_on_the_thief_only_and_shows_the_alert(monkeypatch):
    events = []

    class RecordingGuard(Guard):
        """The demo's guard, also handing every alert event (not only the one printed) to the test."""

        def __init__(self, *args, on_alert, **kwargs):
            def record(event):
                events.append(event)
                on_alert(event)

            super().__init__(*args, on_alert=record, **kwargs)

    monkeypatch.setattr(edgeguard.cli.demo, "Guard", RecordingGuard)
    lines = []
    run_detector_demo(lines.append)
    assert [e.client_id for e in events] == ["thief"]  # the benign client never reaches risk 1
    event = events[0]
    # The thief cycles six seed digits, perturbing them: queries 1-6 are new, and a chain alert needs
    # four near-copies, so query 10 is the earliest it can come; well within the 60 queries shown.
    assert 10 <= event.query_index <= 30
    assert any(r.signal == "chain" and r.ratio >= 1 for r in event.reasons)
    text = "\n".join(lines)
    assert f"ALERT on client 'thief' at query {event.query_index}: small-perturbation chains" in text
    assert "MITRE ATLAS: AML.T0024.002, AML.T0040" in text
    printed = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert printed["client_id"] == "thief" and printed["query_index"] == event.query_index
    assert printed["mitre_atlas"] == ["AML.T0024.002", "AML.T0040"]
