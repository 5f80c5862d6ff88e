"""The CLI never loses or destroys a user's file, and says clearly why it refused: an output that
is an input, an existing output without --force, a full disk (no partial or temporary file left);
usage errors against the format's limits; key files of the wrong kind; the validity window; `--json`
on every command; help on every option; no terminal escape from a file reaching the terminal."""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeguard.cli import EXIT_ERROR, EXIT_FORMAT, EXIT_KEY, EXIT_OK, EXIT_POLICY, EXIT_USAGE, build_parser
from edgeguard.cli._common import safe_text
from helpers import canonical, split, with_header
from test_cli import CliFiles, cli, failed, files, make_world, seal

SAME = "is the same file as the input"


def no_temp_files(d: Path) -> None:
    left = [p.name for p in d.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".edgeguard-")]
    assert not left, left


@pytest.fixture
def w(tmp_path: Path) -> CliFiles:
    return make_world(tmp_path)


@pytest.fixture
def benign(tmp_path: Path) -> Path:
    path = tmp_path / "benign.npy"
    np.save(path, np.random.default_rng(0).uniform(size=(100, 32)).astype(np.float32))
    return path


@pytest.fixture
def sealed(w: CliFiles) -> Path:
    assert seal(w).code == 0
    return w.d / "m.sealed"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "r.json"
    path.write_bytes((Path(__file__).parent / "data" / "bench-1.0-crypto-quick.json").read_bytes())
    return path


# --- an output that is an input -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["path", "symlink", "hardlink"])
def test_seal_refuses_to_replace_its_model_even_with_force(w: CliFiles, how: str) -> None:
    before = w.model.read_bytes()
    out = {"path": w.model, "symlink": w.d / "link", "hardlink": w.d / "hard"}[how]
    if how == "symlink":
        out.symlink_to(w.model)
    elif how == "hardlink":
        os.link(w.model, out)
    r = cli("seal", w.model, "-o", out, "--sign", w.pub, "--recipient", w.dev_pub, "--force")
    failed(r, EXIT_USAGE, SAME)
    assert "--force" not in r.err and "choose another output path" in r.err
    assert w.model.read_bytes() == before and out.read_bytes() == before


def test_every_writer_refuses_an_output_that_is_an_input(w: CliFiles, sealed: Path, benign: Path, results: Path) -> None:
    failed(cli("seal", w.model, "-o", w.pub, "--sign", w.pub, "--recipient", w.dev_pub, "--force"), EXIT_USAGE, SAME)
    failed(cli("unseal", sealed, "-o", sealed, "--identity", w.dev, "--trust", w.pub_key, "--force"), EXIT_USAGE, SAME)
    failed(cli("unseal", sealed, "-o", w.dev, "--identity", w.dev, "--trust", w.pub_key, "--force"), EXIT_USAGE, SAME)
    failed(cli("keygen", "--type", "x25519", "-o", w.d / "k", "--public", w.d / "k"), EXIT_USAGE, "is the same file as the output")
    failed(cli("profile", benign, "-o", benign, "--force"), EXIT_USAGE, SAME)
    model = w.d / "m.onnx"
    model.write_bytes(b"not looked at")
    failed(cli("bench", "--suite", "load", "--model", model, "-o", model, "--force"), EXIT_USAGE, SAME)
    report = results.parent / "report"
    report.mkdir()
    os.link(results, report / "report.md")
    failed(cli("bench", "report", results, "--out", report, "--no-plots", "--force"), EXIT_USAGE, SAME)
    json.loads(results.read_text())
    assert model.read_bytes() == b"not looked at" and sealed.read_bytes()[:8] == b"EDGESEAL"
    assert w.dev.read_text().startswith("-----BEGIN PRIVATE KEY-----") and not (w.d / "k").exists()


# --- existing outputs, --force, and checks before long work ----------------------------------------


def test_profile_checks_its_output_before_calibrating(benign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeguard.detect import Profile

    existing = tmp_path / "p.profile"
    existing.write_bytes(b"keep me")
    with monkeypatch.context() as m:
        m.setattr(Profile, "build", lambda *a, **k: pytest.fail("calibrated before checking the output"))
        failed(cli("profile", benign, "-o", existing), EXIT_ERROR, "already exists")
        failed(cli("profile", benign, "-o", tmp_path / "missing" / "p"), EXIT_ERROR, "there is no directory")
        failed(cli("profile", benign, "-o", tmp_path), EXIT_ERROR, "is a directory")
    assert existing.read_bytes() == b"keep me"
    r = cli("profile", benign, "-o", existing, "--force", "--sketch-dim", "12", "--json")
    assert r.code == EXIT_OK, r.err
    info = r.json()
    assert info["output"] == str(existing) and info["bytes"] == existing.stat().st_size and info["features"] == 32
    assert "novelty" in info["signals_armed"]
    Profile.load(existing)
    no_temp_files(tmp_path)


def test_bench_checks_its_output_before_measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeguard.bench.results import make_document
    from edgeguard.cli import bench

    out = tmp_path / "r.json"
    out.write_text("keep me")
    monkeypatch.setattr(bench, "_measure", lambda args: pytest.fail("measured before checking the output"))
    failed(cli("bench", "--suite", "crypto", "-o", out), EXIT_ERROR, "already exists")
    failed(cli("bench", "--suite", "crypto", "-o", tmp_path / "missing" / "r.json"), EXIT_ERROR, "there is no directory")
    assert out.read_text() == "keep me"
    monkeypatch.setattr(bench, "_measure", lambda args: make_document({}, "quick", label="fake"))
    r = cli("bench", "--suite", "crypto", "-o", out, "--force", "--json")
    assert r.code == EXIT_OK and r.json() == json.loads(out.read_text()) and r.json()["label"] == "fake"
    assert "edgeguard bench (quick) on fake" in r.err
    r = cli("bench", "--suite", "crypto", "-o", tmp_path / "quiet.json")
    assert r.code == EXIT_OK and r.out == "" and (tmp_path / "quiet.json").exists()


def test_bench_report_refuses_to_overwrite_without_force(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = cli("bench", "report", results, "--out", out, "--no-plots", "--json")
    assert r.code == EXIT_OK and r.json() == {"report": str(out / "report.md")}
    (out / "report.md").write_text("keep me")
    failed(cli("bench", "report", results, "--out", out, "--no-plots"), EXIT_ERROR, "already exists")
    assert (out / "report.md").read_text() == "keep me"
    assert cli("bench", "report", results, "--out", out, "--no-plots", "--force").code == EXIT_OK
    assert (out / "report.md").read_text().startswith("#")
    no_temp_files(tmp_path)


def test_unseal_force_replaces_only_after_success(w: CliFiles, sealed: Path) -> None:
    out = w.d / "out.bin"
    out.write_bytes(b"old")
    base = ("unseal", sealed, "-o", out, "--trust", w.pub_key)
    failed(cli(*base, "--identity", w.dev), EXIT_ERROR, "already exists")
    failed(cli(*base, "--identity", w.p256_dev, "--force"), EXIT_KEY, "recipient")  # wrong key: the old file stays
    assert out.read_bytes() == b"old"
    assert cli(*base, "--identity", w.dev, "--force").code == EXIT_OK
    assert out.read_bytes() == w.model.read_bytes()
    no_temp_files(w.d)


# --- a full disk ---------------------------------------------------------------------------------

_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process at the limit
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from edgeguard.cli import main
sys.exit(main(sys.argv[2:]))
"""


def limited(limit: int, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process that cannot write a file beyond `limit` bytes (EFBIG): a full disk
    that needs no mount and no root."""
    return subprocess.run([sys.executable, "-c", _LIMITED, str(limit), *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False, timeout=120)  # fmt: skip


def test_a_write_beyond_the_file_size_limit_leaves_nothing(w: CliFiles, benign: Path, results: Path) -> None:
    before = files(w)
    report = w.d / "report"
    cases = {
        w.d / "m.sealed": ("seal", w.model, "-o", w.d / "m.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--chunk-size", "4K"),
        w.d / "new.key": ("keygen", "--type", "p256", "-o", w.d / "new.key"),
        w.d / "p.profile": ("profile", benign, "-o", w.d / "p.profile", "--sketch-dim", "12"),
        report / "report.md": ("bench", "report", results, "--out", report, "--no-plots"),
    }
    for out, args in cases.items():
        r = limited(64, *args)
        assert r.returncode == EXIT_ERROR, (args, r.stderr)
        assert r.stderr.startswith(f"edgeguard: error: File too large: {out}\n"), r.stderr
        assert "Traceback" not in r.stderr and ".tmp" not in r.stderr
    assert files(w) - before <= {"report"} and not list(report.iterdir())
    no_temp_files(w.d)


def _enospc(*args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_seal_on_a_full_disk(w: CliFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    before = files(w)
    monkeypatch.setattr(os, "posix_fallocate", _enospc)
    r = seal(w, "m.sealed")
    failed(r, EXIT_ERROR, f"edgeguard: error: No space left on device: {w.d / 'm.sealed'}")
    assert "nothing was written" in r.err
    assert files(w) == before


def test_seal_without_fallocate_support_writes_the_same_file(w: CliFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system cannot pre-allocate, the file is written with write(): on a full disk
    that fails cleanly too."""

    def unsupported(*args: object) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    assert seal(w, "m.sealed").code == EXIT_OK
    assert cli("unseal", w.d / "m.sealed", "-o", w.d / "out", "--identity", w.dev, "--trust", w.pub_key).code == EXIT_OK
    assert (w.d / "out").read_bytes() == w.model.read_bytes()

    before = files(w)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: _enospc() if fd > 2 else real_write(fd, data))
    failed(seal(w, "n.sealed"), EXIT_ERROR, f"No space left on device: {w.d / 'n.sealed'}")
    failed(cli("keygen", "--type", "ed25519", "-o", w.d / "k"), EXIT_ERROR, f"No space left on device: {w.d / 'k'}")
    assert files(w) == before


# --- inputs that are not what they should be -------------------------------------------------------


def test_profile_of_an_empty_or_npz_file_is_a_clean_error(tmp_path: Path) -> None:
    empty = tmp_path / "e.npy"
    empty.write_bytes(b"")
    failed(cli("profile", empty, "-o", tmp_path / "p"), EXIT_ERROR, f"cannot read {empty}")
    archive = tmp_path / "a.npz"
    np.savez(archive, x=np.zeros((100, 32)))
    failed(cli("profile", archive, "-o", tmp_path / "p"), EXIT_ERROR, "is an .npz archive")
    assert not (tmp_path / "p").exists()


def test_bench_model_that_is_not_onnx_is_refused_before_measuring(w: CliFiles, sealed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeguard.cli import bench

    monkeypatch.setattr(bench, "_measure", lambda args: pytest.fail("measured an unusable model"))
    empty, garbage = w.d / "e.onnx", w.d / "g.onnx"
    empty.write_bytes(b"")
    garbage.write_bytes(b"garbage\n")
    failed(cli("bench", "--suite", "load", "--model", empty), EXIT_FORMAT, "is empty: not an ONNX model")
    failed(cli("bench", "--suite", "load", "--model", sealed), EXIT_FORMAT, "is a sealed file")
    failed(cli("bench", "--suite", "inference", "--model", garbage), EXIT_FORMAT, "onnxruntime cannot load")


@pytest.mark.parametrize("content", [b"", b"garbage\n"], ids=["empty", "garbage"])
def test_seal_refuses_an_onnx_file_that_is_no_model(w: CliFiles, content: bytes) -> None:
    model = w.d / "bad.onnx"
    model.write_bytes(content)
    before = files(w)
    r = cli("seal", model, "-o", w.d / "bad.sealed", "--sign", w.pub, "--recipient", w.dev_pub)
    failed(r, EXIT_FORMAT, f"{model} is ")
    assert "ONNX model" in r.err and files(w) == before


def test_a_duplicate_recipient_is_a_usage_error(w: CliFiles) -> None:
    failed(seal(w, "m.sealed", "--recipient", w.dev_pub), EXIT_USAGE, f"--recipient {w.dev_pub} and --recipient {w.dev_pub} are the same key")


def test_a_key_of_the_wrong_kind_is_named(w: CliFiles, sealed: Path) -> None:
    out = w.d / "x"
    failed(cli("seal", w.model, "-o", out, "--sign", w.pub_key, "--recipient", w.dev_pub), EXIT_KEY,
           f"{w.pub_key} is a public key; --sign needs the publisher's private key")
    failed(cli("seal", w.model, "-o", out, "--sign", w.pub, "--recipient", w.dev), EXIT_KEY,
           f"{w.dev} is a private key; --recipient needs a device's public key")
    failed(cli("unseal", sealed, "-o", out, "--identity", w.dev_pub, "--trust", w.pub_key), EXIT_KEY,
           f"{w.dev_pub} is a public key; --identity needs a device's private key")
    failed(cli("verify", sealed, "--trust", w.pub_key, "--trust", w.pub), EXIT_KEY,
           f"{w.pub} is a private key; --trust needs the publisher's public key")
    assert not out.exists()


# --- the validity window ----------------------------------------------------------------------------


def test_an_expired_file_is_refused_unless_asked(w: CliFiles) -> None:
    r = seal(w, "old.sealed", "--not-before", "@1000000000", "--not-after", "@1500000000")
    assert r.code == EXIT_OK and "edgeguard: warning: --not-after 2017-07-14T02:40:00Z is in the past" in r.err
    old = w.d / "old.sealed"
    r = cli("verify", old, "--trust", w.pub_key)
    failed(r, EXIT_POLICY, "expired at 2017-07-14T02:40:00Z (valid from 2001-09-09T01:46:40Z until 2017-07-14T02:40:00Z)")
    assert r.out == "" and "--ignore-validity" in r.err
    r = cli("verify", old, "--trust", w.pub_key, "--ignore-validity", "--json")
    assert r.code == EXIT_OK and r.json()["verified"] is True
    assert r.err.startswith("edgeguard: warning: ") and "expired" in r.err
    out = w.d / "out"
    failed(cli("unseal", old, "-o", out, "--identity", w.dev, "--trust", w.pub_key), EXIT_POLICY, "expired")
    assert not out.exists()
    assert cli("unseal", old, "-o", out, "--identity", w.dev, "--trust", w.pub_key, "--ignore-validity").code == EXIT_OK
    assert out.read_bytes() == w.model.read_bytes()


def test_a_file_not_yet_valid_is_refused(w: CliFiles) -> None:
    assert seal(w, "new.sealed", "--not-before", "2099-01-01").code == EXIT_OK
    failed(cli("verify", w.d / "new.sealed", "--trust", w.pub_key), EXIT_POLICY, "not valid before 2099-01-01T00:00:00Z")


def test_a_forged_window_is_an_integrity_error_not_a_policy_one(w: CliFiles, sealed: Path) -> None:
    """The window that makes unseal refuse is authenticated first."""
    data = sealed.read_bytes()
    header = split(data).header_obj
    header["model"]["not_after"] = int(time.time()) - 10
    forged = w.d / "forged.sealed"
    forged.write_bytes(with_header(data, canonical(header)))
    failed(cli("unseal", forged, "-o", w.d / "out", "--identity", w.dev, "--trust", w.pub_key), 3, "integrity")
    assert not (w.d / "out").exists()


# --- temporary names, help, JSON, terminal escapes ----------------------------------------------------


def test_optimize_never_names_its_temporary_copy(w: CliFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeguard import optimize
    from edgeguard.cli.demo import bundled_model

    model = bundled_model()
    r = cli("seal", model, "-o", w.d / "o.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--optimize")
    assert r.code == EXIT_OK and r.out.startswith(f"sealed {model} -> ") and "edgeguard-optimize" not in r.out + r.err
    monkeypatch.setattr(optimize, "optimize_onnx", lambda src, dst: Path(dst).write_bytes(b"garbage\n"))
    r = cli("seal", model, "-o", w.d / "p.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--optimize")
    failed(r, EXIT_FORMAT, f"the optimized {model} is not a loadable ONNX model")
    assert "edgeguard-optimize" not in r.err


def _parsers(parser: argparse.ArgumentParser, prog: str = "edgeguard"):  # type: ignore[no-untyped-def]
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def test_every_option_has_help() -> None:
    missing = [f"{prog} {'/'.join(a.option_strings) or a.dest}" for prog, p in _parsers(build_parser()) for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()]  # fmt: skip
    assert not missing, missing
    seal_help = cli("seal", "--help").out
    assert "@UNIXSECONDS" in seal_help and "K=V" in seal_help


def test_every_command_takes_json() -> None:
    commands = {prog: {o for a in p._actions for o in a.option_strings} for prog, p in _parsers(build_parser()) if prog != "edgeguard"}
    assert len(commands) == 18 and all("--json" in options for options in commands.values()), commands


@pytest.mark.slow  # the whole demo: a strict-mode load and the detector
def test_demo_json_summarises_every_step() -> None:
    r = cli("demo", "--json")
    assert r.code == EXIT_OK, r.err
    info = r.json()
    assert set(info) == {"keygen", "seal", "verify", "inspect", "load", "detect"}
    assert info["verify"]["verified"] is True and info["load"]["largest_difference"] == 0
    assert info["detect"]["client"] == "thief" and "AML.T0024.002" in info["detect"]["techniques"]
    assert info["inspect"]["model"]["name"] == "digits-mlp"


def test_safe_text() -> None:
    assert safe_text("a\x1b[2Jb\x9b\x7f\x00\n\t") == "a\\x1b[2Jb\\x9b\\x7f\\x00\\x0a\\x09"
    assert safe_text("modèle 模型 ✓") == "modèle 模型 ✓"
    assert safe_text("\u202e\udcff") == "\\u202e\\udcff"  # a bidi override; an undecodable file name byte
    assert safe_text(safe_text("\x1b")) == "\\x1b"


def test_header_values_cannot_reach_the_terminal_as_escapes(w: CliFiles) -> None:
    name, label = "evil\x1b[2J", "x\x9by"
    r = seal(w, "e.sealed", "--name", name, "--label", f"k={label}")
    assert r.code == EXIT_OK and "\x1b" not in r.out and "\x9b" not in r.out
    for args in (("inspect", w.d / "e.sealed"), ("verify", w.d / "e.sealed", "--trust", w.pub_key)):
        r = cli(*args)
        assert r.code == EXIT_OK and "\x1b" not in r.out and "\x9b" not in r.out
        assert "evil\\x1b[2J" in r.out and "k=x\\x9by" in r.out
        info = cli(*args, "--json").json()  # JSON stays exact
        assert info["model"]["name"] == name and info["model"]["labels"] == {"k": label}
    missing = w.d / "no\x1b]0;pwned\x07such"
    r = cli("inspect", missing)
    failed(r, EXIT_ERROR, "no\\x1b]0;pwned\\x07such")
    assert "\x1b" not in r.err and "\x07" not in r.err
