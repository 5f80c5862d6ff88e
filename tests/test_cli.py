"""The `edgeguard` command line (docs/cli.md): every subcommand's happy path and errors,
`edgeguard: error:` lines with the documented exit codes, no traceback, no output file on failure,
and `--json` output that parses."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeguard.cli import EXIT_ERROR, EXIT_FORMAT, EXIT_INTEGRITY, EXIT_KEY, EXIT_OK, EXIT_USAGE, main
from helpers import split

CODES = {"ok": 0, "error": 1, "usage": 2, "integrity": 3, "format": 4, "key": 5, "policy": 6}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.out)


def cli(*args: str | Path) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: usage errors, --help, --version
            code = int(exc.code or 0)
    result = Result(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in result.err + result.out
    return result


def cli_process(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """A real process, to see the real exit status and that no traceback reaches the terminal."""
    proc = subprocess.run([sys.executable, "-m", "edgeguard.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, check=False, timeout=60)  # fmt: skip
    assert "Traceback" not in proc.stderr + proc.stdout
    return Result(proc.returncode, proc.stdout, proc.stderr)


def failed(r: Result, code: int, message: str | None = None) -> None:
    assert r.code == code, (r.code, r.err)
    lines = r.err.splitlines()
    if code == EXIT_USAGE:  # argparse's "usage: ..." lines, then "edgeguard: error: [COMMAND: ]..."
        errors = [line for line in lines if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith("edgeguard: error: "), r.err
        assert lines[-1] == errors[0] or lines[-1].startswith("edgeguard: hint: "), r.err
    else:
        assert lines[0].startswith("edgeguard: error: "), r.err
        assert all(line.startswith(("edgeguard: error: ", "edgeguard: hint: ")) for line in lines), r.err
    if message:
        assert message in r.err, r.err


@dataclass
class CliFiles:
    """Keys made by `edgeguard keygen` and a raw model, all in one folder."""

    d: Path
    model: Path
    pub: Path
    pub_key: Path
    other_pub: Path
    dev: Path
    dev_pub: Path
    p256_dev: Path
    p256_dev_pub: Path


def make_world(d: Path) -> CliFiles:
    """Keys made with `edgeguard keygen` and a small raw model in `d`."""
    for name, kind in (("publisher", "ed25519"), ("other", "p256"), ("device", "x25519"), ("p256dev", "p256")):
        r = cli("keygen", "--type", kind, "-o", d / f"{name}.key", "--json")
        assert r.code == 0 and r.json()["type"] == kind
    model = d / "model.bin"
    model.write_bytes(bytes(range(256)) * 40)
    return CliFiles(d, model, d / "publisher.key", d / "publisher.key.pub", d / "other.key.pub", d / "device.key",
                 d / "device.key.pub", d / "p256dev.key", d / "p256dev.key.pub")  # fmt: skip


@pytest.fixture
def w(tmp_path: Path) -> CliFiles:
    return make_world(tmp_path)


def seal(w: CliFiles, out: str = "m.sealed", *extra: str | Path) -> Result:
    return cli("seal", w.model, "-o", w.d / out, "--sign", w.pub, "--recipient", w.dev_pub, "--chunk-size", "4K", *extra)


def files(w: CliFiles) -> set[str]:
    return {p.name for p in w.d.iterdir()}


# --- keygen -----------------------------------------------------------------------------------


def test_keygen(tmp_path: Path) -> None:
    r = cli("keygen", "--type", "p256", "-o", tmp_path / "k", "--public", tmp_path / "pub.pem", "--json")
    info = r.json()
    assert r.code == EXIT_OK and set(info) == {"type", "key_id", "private_key", "public_key"}
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600 and (tmp_path / "pub.pem").exists()
    r = cli("keygen", "--type", "ed25519", "-o", tmp_path / "t")
    assert r.code == 0 and "wrote ed25519" in r.out and (tmp_path / "t.pub").exists()
    before = (tmp_path / "k").read_bytes()
    failed(cli("keygen", "--type", "x25519", "-o", tmp_path / "k"), EXIT_ERROR, "already exists")
    assert (tmp_path / "k").read_bytes() == before
    failed(cli("keygen", "--type", "rsa", "-o", tmp_path / "r"), EXIT_USAGE)
    failed(cli("keygen", "--type", "x25519"), EXIT_USAGE)
    failed(cli("keygen", "--type", "x25519", "-o", tmp_path / "n", "--public", tmp_path / "missing" / "n.pub"), EXIT_ERROR)
    failed(cli("keygen", "--type", "x25519", "-o", tmp_path / "missing" / "n"), EXIT_ERROR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "pub.pem", "t", "t.pub"]


# --- seal ---------------------------------------------------------------------------------------


def test_seal_inspect_verify_unseal(w: CliFiles) -> None:
    r = seal(w, "m.sealed", "--recipient", w.p256_dev_pub, "--cipher", "chacha20-poly1305", "--name", "digits",
             "--model-version", "5", "--label", "team=edge", "--label", "empty=", "--not-before", "2020-01-01",
             "--not-after", "@4102444800", "--json")  # fmt: skip
    assert r.code == EXIT_OK, r.err
    info = r.json()
    assert info["output"] == str(w.d / "m.sealed")
    assert (info["cipher"], info["chunk_size"], info["payload_kind"]) == ("chacha20-poly1305", 4096, "raw")
    assert info["model"] == {"name": "digits", "version": 5, "created": info["model"]["created"], "labels": {"empty": "", "team": "edge"},
                             "not_before": "2020-01-01T00:00:00Z", "not_after": "2100-01-01T00:00:00Z"}  # fmt: skip
    assert [x["type"] for x in info["recipients"]] == ["hpke-x25519", "hpke-p256"]
    assert info["file_size"] == (w.d / "m.sealed").stat().st_size

    r = cli("inspect", w.d / "m.sealed", "--json")
    assert r.code == 0 and r.json()["verified"] is False and r.json()["model"]["name"] == "digits"
    r = cli("inspect", w.d / "m.sealed")
    assert r.code == 0 and "nothing has been verified" in r.out and "recipient   hpke-p256" in r.out

    r = cli("verify", w.d / "m.sealed", "--trust", w.other_pub, "--trust", w.pub_key, "--json")
    assert r.code == 0 and r.json()["verified"] is True and r.json()["signer"]["alg"] == "ed25519"
    r = cli("verify", w.d / "m.sealed", "--trust", w.pub_key)
    assert r.code == 0 and r.out.startswith("OK: ")

    for i, identity in enumerate((w.dev, w.p256_dev)):
        r = cli("unseal", w.d / "m.sealed", "-o", w.d / f"out{i}", "--identity", identity, "--trust", w.pub_key, "--json")
        assert r.code == 0 and r.json()["output"] == str(w.d / f"out{i}")
        assert (w.d / f"out{i}").read_bytes() == w.model.read_bytes()
        assert (w.d / f"out{i}").stat().st_mode & 0o777 == 0o600


def test_seal_text_output_and_force(w: CliFiles) -> None:
    r = seal(w)
    assert r.code == 0 and r.out.startswith(f"sealed {w.model} -> ")
    before = (w.d / "m.sealed").read_bytes()
    failed(seal(w), EXIT_ERROR, "already exists")
    assert (w.d / "m.sealed").read_bytes() == before
    assert seal(w, "m.sealed", "--force").code == 0
    assert (w.d / "m.sealed").read_bytes() != before


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--chunk-size", "12K"], EXIT_USAGE, "--chunk-size: must be a power of two in 4K..64M"),
    (["--chunk-size", "2K"], EXIT_USAGE, "--chunk-size: must be a power of two in 4K..64M"),
    (["--chunk-size", "128M"], EXIT_USAGE, "--chunk-size: must be a power of two in 4K..64M"),
    (["--chunk-size", "lots"], EXIT_USAGE, None),
    (["--label", "novalue"], EXIT_USAGE, None),
    (["--label", "=v"], EXIT_USAGE, None),
    (["--not-before", "yesterday"], EXIT_USAGE, None),
    (["--model-version", "x"], EXIT_USAGE, None),
    (["--cipher", "aes-128-gcm"], EXIT_USAGE, None),
    (["--kind", "pickle"], EXIT_USAGE, None),
    (["--threads", "-1"], EXIT_USAGE, "--threads"),
    (["--threads", "99999999999"], EXIT_USAGE, "--threads"),
    (["--passphrase"], EXIT_USAGE, "--passphrase cannot be combined with --recipient"),
    (["--not-before", "2030-01-01", "--not-after", "2029-01-01"], EXIT_USAGE, "--not-before (2030-01-01T00:00:00Z) must be earlier than --not-after"),
    (["--not-before", "@5", "--not-after", "@5"], EXIT_USAGE, "must be earlier than --not-after"),
    (["--not-before", "1960-01-01"], EXIT_USAGE, "--not-before: '1960-01-01' is before 1970"),
    (["--not-after", "@9007199254740992"], EXIT_USAGE, "--not-after:"),
    (["--label", "k" * 65 + "=v"], EXIT_USAGE, "--label: a label key is at most 64 bytes"),
    (["--label", "k=" + "v" * 257], EXIT_USAGE, "--label: a label value is at most 256 bytes"),
    (["--label", "k=1", "--label", "k=2"], EXIT_USAGE, "--label k=... is given twice"),
    ([f"--label=k{i}=v" for i in range(65)], EXIT_USAGE, "at most 64 --label options"),
    (["--name", ""], EXIT_USAGE, "--name: a model name is 1..256 bytes"),
    (["--name", "n" * 257], EXIT_USAGE, "--name: a model name is 1..256 bytes"),
    (["--model-version", "-1"], EXIT_USAGE, "--model-version: a model version is an integer in 0..9007199254740991"),
    (["--model-version", "9007199254740992"], EXIT_USAGE, "--model-version"),
    (["--kind", "safetensors"], EXIT_FORMAT, "safetensors"),
    (["--kind", "onnx"], EXIT_FORMAT, "ONNX"),
], ids=["chunk-12K", "chunk-2K", "chunk-128M", "chunk-text", "label", "label-key", "date", "version", "cipher", "kind", "threads-negative", "threads-huge",
        "passphrase+recipient", "window", "empty-window", "before-1970", "after-max-int", "label-key-too-long", "label-value-too-long", "label-twice",
        "too-many-labels", "empty-name", "name-too-long", "negative-version", "version-too-big", "not-safetensors", "not-onnx"])  # fmt: skip
def test_seal_errors(w: CliFiles, extra: list[str], code: int, message: str | None) -> None:
    before = files(w)
    failed(seal(w, "m.sealed", *extra), code, message)
    assert files(w) == before


def test_seal_key_errors(w: CliFiles) -> None:
    before = files(w)
    args = ("seal", w.model, "-o", w.d / "m.sealed")
    failed(cli(*args, "--sign", w.dev, "--recipient", w.dev_pub), EXIT_KEY, f"{w.dev} holds an X25519 key, a device key that cannot sign")
    failed(cli(*args, "--sign", w.pub, "--recipient", w.pub_key), EXIT_KEY, "recipient")
    failed(cli(*args, "--sign", w.pub, "--recipient", w.d / "nope.pub"), EXIT_KEY, "cannot open key file")
    failed(cli(*args, "--sign", w.pub), EXIT_USAGE, "no recipient given")
    failed(cli(*args, "--recipient", w.dev_pub), EXIT_USAGE)
    failed(cli("seal", w.d / "missing.bin", "-o", w.d / "m.sealed", "--sign", w.pub, "--recipient", w.dev_pub), EXIT_ERROR, "not a file")
    os.chmod(w.pub, 0o644)
    r = cli(*args, "--sign", w.pub, "--recipient", w.dev_pub)
    failed(r, EXIT_KEY, "accessible by group or others")
    assert "chmod 600" in r.err
    assert files(w) == before


@pytest.mark.slow  # two scrypt runs at log_n 18 (256 MiB each); still part of every run
def test_seal_to_a_passphrase_from_the_environment(w: CliFiles) -> None:
    """The CLI seals with the default scrypt work factor (log_n 18): one seal and one open only."""
    env = {"EDGEGUARD_PASSPHRASE": "cli passphrase"}
    r = cli_process("seal", w.model, "-o", w.d / "p.sealed", "--sign", w.pub, "--passphrase", "--json", env=env)
    assert r.code == 0, r.err
    assert json.loads(r.out)["recipients"] == [{"type": "scrypt", "log_n": 18}]
    r = cli_process("unseal", w.d / "p.sealed", "-o", w.d / "p.out", "--passphrase", "--trust", w.pub_key, env=env)
    assert r.code == 0 and (w.d / "p.out").read_bytes() == w.model.read_bytes()
    # no passphrase available: stdin is not a terminal and the variable is unset
    r = cli_process("unseal", w.d / "p.sealed", "-o", w.d / "q.out", "--passphrase", "--trust", w.pub_key, env={"EDGEGUARD_PASSPHRASE": ""})
    failed(r, EXIT_USAGE, "needs a terminal")
    assert not (w.d / "q.out").exists()


# --- verify / inspect / unseal errors ------------------------------------------------------------


@pytest.fixture
def sealed(w: CliFiles) -> Path:
    assert seal(w).code == 0
    return w.d / "m.sealed"


def _variant(w: CliFiles, sealed: Path, name: str, data: bytes) -> Path:
    path = w.d / name
    path.write_bytes(data)
    return path


def test_verify_errors(w: CliFiles, sealed: Path) -> None:
    data = sealed.read_bytes()
    p = split(data)
    tampered = _variant(w, sealed, "t.sealed", data[:-1] + bytes([data[-1] ^ 1]))
    r = cli("verify", tampered, "--trust", w.pub_key)
    failed(r, EXIT_INTEGRITY, "edgeguard: error: sealed file failed integrity verification")
    assert "tampered" in r.err  # the hint
    failed(cli("verify", sealed, "--trust", w.other_pub), EXIT_KEY, "not trusted")
    failed(cli("verify", _variant(w, sealed, "g.sealed", b"not a sealed file at all"), "--trust", w.pub_key), EXIT_FORMAT, "bad magic")
    failed(cli("verify", _variant(w, sealed, "v.sealed", data[:8] + b"\x00\x03" + data[10:]), "--trust", w.pub_key), EXIT_FORMAT, "version 3")
    failed(cli("verify", _variant(w, sealed, "s.sealed", p.preamble + p.header + p.root), "--trust", w.pub_key), EXIT_INTEGRITY)
    failed(cli("verify", w.d / "missing.sealed", "--trust", w.pub_key), EXIT_ERROR, "No such file")
    failed(cli("verify", sealed, "--trust", w.d / "missing.pub"), EXIT_KEY)
    failed(cli("verify", sealed, "--trust", w.dev_pub), EXIT_KEY)  # a device key is no publisher key
    failed(cli("verify", sealed), EXIT_USAGE)
    failed(cli("verify", sealed, "--trust", w.pub_key, "--threads", "-1"), EXIT_USAGE, "--threads")


def test_inspect_errors(w: CliFiles, sealed: Path) -> None:
    data = sealed.read_bytes()
    failed(cli("inspect", _variant(w, sealed, "g.sealed", b"EDGESEAL")), EXIT_FORMAT)
    failed(cli("inspect", _variant(w, sealed, "j.sealed", data[:16] + b" " + data[17:])), EXIT_FORMAT, "header")
    failed(cli("inspect", w.d / "missing.sealed"), EXIT_ERROR)
    hl = int.from_bytes(data[12:16], "big")
    failed(cli("inspect", _variant(w, sealed, "s.sealed", data[: 16 + hl + 50])), EXIT_INTEGRITY)  # ends in the signature block
    # inspect verifies nothing: a tampered chunk still inspects
    assert cli("inspect", _variant(w, sealed, "t.sealed", data[:-1] + bytes([data[-1] ^ 1]))).code == 0


def test_unseal_errors_leave_no_output(w: CliFiles, sealed: Path) -> None:
    data = sealed.read_bytes()
    out = w.d / "out.bin"
    base = ("unseal", sealed, "-o", out)
    failed(cli(*base, "--identity", w.p256_dev, "--trust", w.pub_key), EXIT_KEY, "is a recipient of this file")
    failed(cli(*base, "--identity", w.dev, "--trust", w.other_pub), EXIT_KEY, "not trusted")
    tampered = _variant(w, sealed, "t.sealed", data[:-1] + bytes([data[-1] ^ 1]))
    failed(cli("unseal", tampered, "-o", out, "--identity", w.dev, "--trust", w.pub_key), EXIT_INTEGRITY, "integrity")
    failed(cli(*base, "--identity", w.dev, "--passphrase", "--trust", w.pub_key), EXIT_USAGE, "exactly one")
    failed(cli(*base, "--trust", w.pub_key), EXIT_USAGE, "exactly one")
    failed(cli(*base, "--identity", w.pub, "--trust", w.pub_key), EXIT_KEY)  # a signing key is no identity
    failed(cli(*base, "--identity", w.dev), EXIT_USAGE)
    os.chmod(w.dev, 0o640)
    failed(cli(*base, "--identity", w.dev, "--trust", w.pub_key), EXIT_KEY, "chmod 600")
    os.chmod(w.dev, 0o600)
    assert not out.exists()
    out.write_bytes(b"keep me")
    failed(cli(*base, "--identity", w.dev, "--trust", w.pub_key), EXIT_ERROR, "already exists")
    assert out.read_bytes() == b"keep me"
    assert not any(p.name.endswith(".tmp") for p in w.d.iterdir())


# --- the process as a whole ----------------------------------------------------------------------


def test_real_process_exit_codes_and_no_traceback(w: CliFiles, sealed: Path) -> None:
    data = sealed.read_bytes()
    tampered = _variant(w, sealed, "t.sealed", data[:-1] + bytes([data[-1] ^ 1]))
    garbage = _variant(w, sealed, "g.sealed", b"\x00" * 200)
    cases = [
        (("verify", sealed, "--trust", w.pub_key), EXIT_OK),
        (("verify", tampered, "--trust", w.pub_key), EXIT_INTEGRITY),
        (("inspect", garbage), EXIT_FORMAT),
        (("unseal", sealed, "-o", w.d / "o", "--identity", w.p256_dev, "--trust", w.pub_key), EXIT_KEY),
        (("unseal", sealed, "-o", w.d / "o"), EXIT_USAGE),
        (("frobnicate",), EXIT_USAGE),
        (("inspect", w.d), EXIT_ERROR),  # a directory
    ]
    for args, code in cases:
        r = cli_process(*args)
        assert r.code == code, (args, r.err)
        if code not in (EXIT_OK, EXIT_USAGE):
            failed(r, code)
    assert not (w.d / "o").exists()


def test_help_documents_exit_codes_and_version() -> None:
    r = cli("--help")
    assert r.code == 0 and "exit codes:" in r.out
    for code, meaning in ((3, "integrity"), (4, "well-formed"), (5, "key problem")):
        assert f"{code}  " in r.out and meaning in r.out
    for sub in ("keygen", "seal", "verify", "inspect", "unseal", "demo"):
        h = cli(sub, "--help")
        assert h.code == 0 and "exit codes:" in h.out
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("edgeguard ")
    assert set(CODES.values()) == {EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTEGRITY, EXIT_FORMAT, EXIT_KEY, 6}


def test_demo_runs_the_whole_flow() -> None:
    r = cli("demo")
    assert r.code == 0, r.err
    for step in ("1. keygen", "2. seal", "3. verify", "4. inspect", "5. load", "6. detect"):
        assert step in r.out
    assert "largest difference over all outputs: 0" in r.out  # sealed strict load == plain onnxruntime
    assert "ALERT on client 'thief'" in r.out and "AML.T0024.002" in r.out
    assert "ALERT on client 'benign'" not in r.out


def test_seal_optimize_gives_a_model_strict_mode_runs_like_the_original(w: CliFiles) -> None:
    import numpy as np
    import onnxruntime as ort

    from edgeguard.cli.demo import bundled_model, bundled_samples
    from edgeguard.runtime import InferenceSession

    model = bundled_model()
    r = cli("seal", model, "-o", w.d / "opt.sealed", "--sign", w.pub, "--recipient", w.p256_dev_pub, "--optimize", "--json")
    assert r.code == 0, r.err
    assert r.json()["model"]["name"] == model.stem  # named after the original, not the temporary copy
    pixels = np.load(bundled_samples())["pixels"]
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"pixels": pixels})[0]
    with InferenceSession(w.d / "opt.sealed", identity=w.p256_dev, trust=w.pub_key, hygiene="strict") as session:
        got = session.run(None, {"pixels": pixels})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_seal_optimize_refuses_non_onnx(w: CliFiles) -> None:
    raw = w.d / "weights.bin"
    raw.write_bytes(b"x" * 100)
    failed(cli("seal", raw, "-o", w.d / "o", "--sign", w.pub, "--recipient", w.p256_dev_pub, "--optimize"), EXIT_USAGE)
    assert not (w.d / "o").exists()


def test_onnx_model_through_the_cli(w: CliFiles) -> None:
    """The bundled demo model: seal (kind from the extension), verify, unseal, same initializers."""
    import onnx
    from onnx import numpy_helper

    from edgeguard.cli.demo import bundled_model

    model = bundled_model()
    r = cli("seal", model, "-o", w.d / "d.sealed", "--sign", w.pub, "--recipient", w.p256_dev_pub, "--chunk-size", "4K", "--json")
    assert r.code == 0 and r.json()["payload_kind"] == "onnx"
    assert cli("verify", w.d / "d.sealed", "--trust", w.pub_key).code == 0
    assert cli("unseal", w.d / "d.sealed", "-o", w.d / "d.onnx", "--identity", w.p256_dev, "--trust", w.pub_key).code == 0
    want = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer}
    got = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(w.d / "d.onnx")).graph.initializer}
    assert want.keys() == got.keys() and all((want[k] == got[k]).all() for k in want)


def test_closed_stdout_is_not_an_error_message(w: CliFiles, sealed: Path) -> None:
    """`edgeguard inspect --json | true`: the reader is gone before the output is written."""
    proc = subprocess.Popen([sys.executable, "-m", "edgeguard.cli", "inspect", str(sealed), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout and proc.stderr
    proc.stdout.close()  # long before the interpreter has started
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == EXIT_ERROR
    assert err == "", err


def test_cipher_auto_follows_the_target_device(w: CliFiles) -> None:
    """A Raspberry Pi 4 class core (no AES/PMULL crypto extensions) gets ChaCha20-Poly1305."""
    pi4 = w.d / "pi4.json"
    pi4.write_text(json.dumps({"arch": "aarch64", "isa": {"aes": False, "pmull": False, "sha2": False, "neon": True}}))
    r = seal(w, "pi.sealed", "--cipher", "auto", "--target", pi4, "--json")
    assert r.code == 0, r.err
    assert r.json()["cipher"] == "chacha20-poly1305"
    assert cli("inspect", w.d / "pi.sealed", "--json").json()["cipher"] == "chacha20-poly1305"
    n1 = w.d / "n1.json"
    n1.write_text(json.dumps({"arch": "aarch64", "isa": {"aes": True, "pmull": True, "sha2": True, "neon": True}}))
    assert seal(w, "n1.sealed", "--cipher", "auto", "--target", n1, "--json").json()["cipher"] == "aes-256-gcm"


def test_cipher_auto_rejects_a_target_that_is_not_bench_output(w: CliFiles) -> None:
    bad = w.d / "bad.json"
    bad.write_text("[1, 2]")
    failed(seal(w, "x.sealed", "--cipher", "auto", "--target", bad), EXIT_USAGE)
    failed(seal(w, "y.sealed", "--target", bad), EXIT_USAGE)  # --target without auto
    assert not (w.d / "x.sealed").exists() and not (w.d / "y.sealed").exists()


def test_seal_and_inspect_report_protected_coverage(w: CliFiles, tmp_path: Path) -> None:
    """Coverage lies inside the encryption: seal reports it, inspect only with a device key."""
    from runtime_support import make_mlp

    model = make_mlp(tmp_path / "mlp.onnx", widths=(16, 64, 4))
    sealed = cli("seal", model, "-o", tmp_path / "m.sealed", "--sign", w.pub, "--recipient", w.dev_pub, "--json")
    coverage = sealed.json()["coverage"]
    assert sealed.code == EXIT_OK and coverage["percent"] == 100.0
    assert coverage["protected_bytes"] == 16 * 64 * 4 + 64 * 4 * 4  # both weight matrices; the biases (< 1 KiB) stay inline
    text = cli("seal", model, "-o", tmp_path / "t.sealed", "--sign", w.pub, "--recipient", w.dev_pub)
    assert "coverage    100.0% of weight bytes in the secure buffer" in text.out
    header_only = cli("inspect", tmp_path / "m.sealed", "--json")
    assert header_only.code == EXIT_OK and header_only.json()["verified"] is False and "coverage" not in header_only.json()
    full = cli("inspect", tmp_path / "m.sealed", "--identity", w.dev, "--trust", w.pub_key, "--json")
    assert full.code == EXIT_OK and full.json()["verified"] is True
    assert full.json()["coverage"] == coverage
    failed(cli("inspect", tmp_path / "m.sealed", "--identity", w.dev), EXIT_USAGE, "--trust")
    failed(cli("inspect", tmp_path / "m.sealed", "--trust", w.pub_key), EXIT_USAGE, "--identity")
    failed(cli("inspect", tmp_path / "m.sealed", "--identity", w.p256_dev, "--trust", w.pub_key), EXIT_KEY)
    assert seal(w, "raw.sealed").code == EXIT_OK
    raw = cli("inspect", w.d / "raw.sealed", "--identity", w.dev, "--trust", w.pub_key)
    assert raw.code == EXIT_OK and "coverage    not an ONNX payload" in raw.out
