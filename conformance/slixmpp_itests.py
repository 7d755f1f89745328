#!/usr/bin/env python3
"""Runs slixmpp's own integration tests (the `itests/` folder of its source distribution on
PyPI, written by the slixmpp authors) against a Starling server on loopback, one test file per
process with a time limit, and compares the outcome with a committed baseline that may only
move up.

    slixmpp_itests.py --starling PATH/TO/starling [--work DIR] [--baseline FILE]

The sdist is downloaded at run time into the work directory (it is another project's code and
is not committed). Exit status 1 when a test that passes in the baseline does not pass now.
"""
import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

VERSION = "1.17.0"
HERE = Path(__file__).resolve().parent
ACCOUNTS = {"CI_ACCOUNT1": ("one", "itest-pw-1"), "CI_ACCOUNT2": ("two", "itest-pw-2")}
CONFIG = """[server]
domains = ["localhost"]
data_dir = "{data}"
[c2s]
listen = ["127.0.0.1:5222"]
direct_tls_listen = ["127.0.0.1:5223"]
[http]
listen = []
[s2s]
listen = []
[log]
level = "warn"
# slixmpp's archive tests expect the server to archive every conversation, as an operator who
# runs an archive for all users configures it (Starling's own default is "never").
[modules.mam]
default = "always"
"""


def fetch_sdist(work: Path) -> Path:
    root = work / f"slixmpp-{VERSION}"
    if (root / "itests").is_dir():
        return root
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
         f"slixmpp=={VERSION}", "-d", str(work)],
        check=True,
    )
    with tarfile.open(work / f"slixmpp-{VERSION}.tar.gz") as tar:
        tar.extractall(work, filter="data")
    return root


def start_server(starling: str, work: Path) -> subprocess.Popen:
    data = work / "data"
    config = work / "starling.toml"
    config.write_text(CONFIG.format(data=data))
    for user, password in ACCOUNTS.values():
        subprocess.run([starling, "--config", str(config), "user", "add", user, "--password", password],
                       check=False, capture_output=True)
    server = subprocess.Popen([starling, "--config", str(config), "serve"],
                              stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    for _ in range(100):
        if (data / "certs" / "localhost.crt").exists():
            try:
                import socket
                socket.create_connection(("127.0.0.1", 5222), timeout=1).close()
                return server
            except OSError:
                pass
        time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start; see " + str(work / "server.log"))


def run_test(root: Path, test: Path, env: dict) -> tuple[str, str]:
    try:
        done = subprocess.run([sys.executable, "-m", "unittest", str(test.relative_to(root))], cwd=root,
                              env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "error", "timed out after 60 s"
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if done.returncode == 0:
        return ("skip", last) if "skipped" in last else ("pass", last)
    reason = next((line for line in reversed(lines) if "Error" in line or "assert" in line.lower()), last)
    return ("fail" if "failures" in last else "error"), reason[:200]


def read_baseline(path: Path) -> dict:
    baseline = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name, status = line.split()[:2]
                baseline[name] = status
    return baseline


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starling", help="the starling binary to start")
    parser.add_argument("--external-cert", help="run against a server already listening on 127.0.0.1:5222 "
                        "(accounts one@localhost and two@localhost exist) whose certificate is this file")
    parser.add_argument("--work", default=str(HERE / ".work"))
    parser.add_argument("--baseline", default=str(HERE / "baselines" / "slixmpp-itests.txt"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    root = fetch_sdist(work)
    if args.external_cert:
        server, cert = None, args.external_cert
    elif args.starling:
        subprocess.run(["rm", "-rf", str(work / "data")], check=True)
        server, cert = start_server(args.starling, work), str(work / "data" / "certs" / "localhost.crt")
    else:
        raise SystemExit("give --starling or --external-cert")
    env = dict(os.environ, CI_MUC_SERVER="conference.localhost", SSL_CERT_FILE=cert)
    for var, (user, password) in ACCOUNTS.items():
        env[var] = f"{user}@localhost"
        env[var + "_PASSWORD"] = password
    results = {}
    try:
        for test in sorted((root / "itests").glob("test_*.py")):
            results[test.stem] = run_test(root, test, env)
            print(f"{test.stem}: {results[test.stem][0]} {results[test.stem][1]}", flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    (work / "slixmpp-results.txt").write_text(
        "".join(f"{name} {status} # {reason}\n" for name, (status, reason) in results.items()))
    baseline = read_baseline(Path(args.baseline))
    regressions = [n for n, s in baseline.items() if s == "pass" and results.get(n, ("missing",))[0] != "pass"]
    new_passes = [n for n, (s, _) in results.items() if s == "pass" and baseline.get(n) != "pass"]
    for name in new_passes:
        print(f"new pass: {name} (raise the baseline)")
    for name in regressions:
        print(f"REGRESSION: {name} passed in the baseline and now: {results.get(name)}")
    passed = sum(1 for s, _ in results.values() if s == "pass")
    # Failed counts regressions against the baseline; tests the baseline does not expect to
    # pass yet (features still to build) count as skipped.
    print(f"itests: {passed} passed, {len(regressions)} failed, {len(results) - passed - len(regressions)} skipped")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
