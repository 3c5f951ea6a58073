#!/usr/bin/env python3
"""Judge cargo-mutants' mutants of the auth core by the conformance catalogue and by the
server's own tests, resumably and in shards. See tests/mutants/README.md.

Each mutant is applied to a private copy of the committed tree (target/mutants/src, built in
target/mutants/target), never to the working tree, so editing and building the repository while
a run goes on is safe, and a killed run leaves nothing to restore. Each judged mutant is one line
appended to tests/mutants/results.tsv at once; a re-run skips the lines already there.
"""

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = ROOT / "target" / "mutants"
# Set by main(): one private tree and target dir per shard, so shards can run side by side.
SRC = WORK / "src"
TARGET = WORK / "target"
RESULTS = HERE / "results.tsv"
TABLE = HERE / "results.md"
REASONS = HERE / "survivors.tsv"

# Highest value first: the spec's behaviours (state machine, identity, reading the backend's
# answer, the session registry), then the rest of the auth core.
FILES = [
    "machine.rs",
    "identity.rs",
    "backend.rs",
    "registry.rs",
    "core.rs",
    "session.rs",
    "http_backend.rs",
    "domain.rs",
    "admin.rs",
    "configurator.rs",
]
SPEC_FILES = {"machine.rs", "identity.rs", "backend.rs", "registry.rs", "core.rs"}
COLUMNS = ["file", "line", "col", "function", "mutation", "catalogue", "server", "auth_tree", "failed_cases"]
CAUGHT = {"caught", "timeout"}
VERDICTS = ["open", "equivalent", "unobservable", "unspecified"]
# What the table counts per file: outcomes (see classify) and survivors by verdict.
COUNTS = (["generated", "judged", "unviable", "catalogue", "server only", "missed",
           "missed by the catalogue (server tests not run)"] + ["verdict " + v for v in VERDICTS])


def log(msg):
    print(f"[mutants {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def git(*args, cwd=ROOT):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def nice(cmd):
    return ["nice", "-n", "15", *cmd]


# ---------------------------------------------------------------------------------------------
# The private tree

def sync_snapshot():
    """Make SRC hold exactly HEAD's files. Only files whose content differs are rewritten, so
    they (and only they) get a fresh mtime and cargo rebuilds what changed."""
    SRC.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tempfile.TemporaryDirectory(dir=SRC.parent) as tmp:
        tar_path = Path(tmp) / "head.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            wanted = set()
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                wanted.add(member.name)
                data = tar.extractfile(member).read()
                dest = SRC / member.name
                if dest.is_file() and dest.read_bytes() == data:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                os.chmod(dest, member.mode & 0o777)
        for path in SRC.rglob("*"):
            rel = path.relative_to(SRC).as_posix()
            if path.is_file() and rel not in wanted and not rel.startswith(("target/", "conformance/media", "server/media", "tests/media", "media/")):
                path.unlink()


def seed_target():
    """A cold debug build of the workspace takes long on two cores: start from the worktree's
    compiled dependencies (a copy, never shared: both trees' workspace crates hash alike)."""
    if TARGET.exists():
        return
    src = ROOT / "target" / "debug"
    dest = TARGET / "debug"
    dest.mkdir(parents=True)
    if src.is_dir():
        log(f"seeding {dest} from {src} (deps, build scripts, fingerprints)")
        for part in ("deps", "build", ".fingerprint"):
            if (src / part).is_dir():
                subprocess.run(["cp", "-a", str(src / part), str(dest / part)], check=True)


def cargo_env():
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(TARGET)
    env.pop("RUST_LOG", None)
    return env


def list_mutants(files):
    cmd = ["cargo", "mutants", "--list", "--json", "--package", "usher-server"]
    for name in files:
        cmd += ["-f", f"server/src/auth/{name}"]
    out = subprocess.run(nice(cmd), cwd=SRC, check=True, capture_output=True, text=True, env=cargo_env()).stdout
    mutants = json.loads(out)
    order = {name: i for i, name in enumerate(files)}
    for m in mutants:
        m["key"] = key_of(m["file"], m["span"]["start"]["line"], m["span"]["start"]["column"], mutation_of(m))
    mutants.sort(key=lambda m: (order[Path(m["file"]).name], m["span"]["start"]["line"], m["span"]["start"]["column"], m["name"]))
    return mutants


def mutation_of(m):
    # "server/src/auth/x.rs:12:5: replace f -> bool with true" -> "replace f -> bool with true"
    return m["name"].split(": ", 1)[1]


def key_of(file, line, col, mutation):
    return f"{file}:{line}:{col}: {mutation}"


def apply(m):
    """Replace the mutant's span (1-based lines, columns in characters, end exclusive)."""
    path = SRC / m["file"]
    original = path.read_text()
    lines = original.split("\n")
    start, end = m["span"]["start"], m["span"]["end"]
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    a = offsets[start["line"] - 1] + start["column"] - 1
    b = offsets[end["line"] - 1] + end["column"] - 1
    mutated = original[:a] + m["replacement"] + original[b:]
    path.write_text(mutated)
    return path, original



@contextlib.contextmanager
def mutated(m):
    """The private tree with mutant `m` applied for the `with` block, restored after it
    (interrupted or not); yields the mutated file's path and its original text."""
    path, original = apply(m)
    try:
        yield path, original
    finally:
        path.write_text(original)

# ---------------------------------------------------------------------------------------------
# Building and running

def build(args, manifest_dir):
    """Build test executables; None when the build fails (an unviable mutant)."""
    cmd = ["cargo", "test", *args, "--no-run", "--message-format=json-render-diagnostics"]
    proc = subprocess.run(nice(cmd), cwd=SRC, capture_output=True, text=True, env=cargo_env())
    if proc.returncode != 0:
        return None
    exes = []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg.get("profile", {}).get("test"):
            exes.append(msg["executable"])
    return exes


def run(exe, cwd, timeout, extra_env=None):
    """Run one test executable in its own process group; (outcome, stdout)."""
    env = cargo_env()
    env["CARGO_MANIFEST_DIR"] = str(cwd)
    env.update(extra_env or {})
    proc = subprocess.Popen(nice([exe]), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return "timeout", out
    except BaseException:
        # Interrupted: the tests run in their own process group, which must not outlive us.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return ("missed" if proc.returncode == 0 else "caught"), out


# The catalogue's timing windows are for an idle machine; a mutation run shares its cores.
CATALOGUE_ENV = {"USHER_STRICT": "1", "USHER_HOLD_CHOICES": "1", "USHER_TIME_SCALE": os.environ.get("USHER_TIME_SCALE", "2")}


def failed_cases(out):
    return [line.rsplit("(", 1)[-1].split(",", 1)[0].rstrip(")") for line in out.splitlines()
            if line.startswith("FAIL ")]


def catalogue(timeout):
    """A failure counts only if the failed cases fail again when run alone: a case that a
    loaded machine made miss its timing window must not count as a catch."""
    exes = build(["-p", "usher-tests", "--test", "conformance", "--test", "cluster_suite"], "tests")
    if not exes:
        return "unviable", "", []
    by_name = {Path(e).name.rsplit("-", 1)[0]: e for e in exes}
    outcome, out = run(by_name["conformance"], SRC / "tests", timeout, CATALOGUE_ENV)
    if outcome == "missed":
        # The catalogue's cluster cases (features/cluster.feature) play against the embedded
        # cluster: two servers and a redis-server, in tests/tests/cluster_suite.rs.
        outcome, out = run(by_name["cluster_suite"], SRC / "tests", timeout, CATALOGUE_ENV)
        if outcome != "missed":
            return outcome, out, ["features/cluster.feature"]
        return outcome, out, []
    exes = [by_name["conformance"]]
    failed = failed_cases(out)
    if outcome == "caught" and failed:
        again, out2 = run(exes[0], SRC / "tests", timeout, {**CATALOGUE_ENV, "USHER_ONLY": ",".join(failed)})
        if again == "missed":
            # Passing alone does not make it a flake: a mutant can break the server for every
            # session once some other case has led it there (a debug build's audit stopping the
            # sweeper, a stale index entry another case's record lands on). A second whole run
            # tells the two apart: a missed timing window does not fail the same cases twice.
            third, out3 = run(exes[0], SRC / "tests", timeout, CATALOGUE_ENV)
            again_failed = [c for c in failed_cases(out3) if c in failed]
            if third != "missed" and again_failed:
                log(f"    {', '.join(again_failed)} failed again in a second whole run (not alone): counted")
                return "caught", out3, again_failed
            log(f"    {', '.join(failed)} failed in the whole run but passed alone and in a second whole run: not counted")
            return "missed", out, []
        failed = failed_cases(out2) or failed
    return outcome, out, failed


def server_tests(timeout):
    """The server's own tests: the library's unit tests (the auth core's own) are built and run
    first, and the integration tests only when those pass, so a mutant the unit tests catch
    costs one binary's build and run. The first failure decides."""
    lib = build(["-p", "usher-server", "--lib"], "server")
    if lib is None:
        return "unviable", ""
    for exe in lib:
        outcome, out = run(exe, SRC / "server", timeout)
        if outcome != "missed":
            return outcome, out
    exes = build(["-p", "usher-server"], "server")
    if exes is None:
        return "unviable", ""
    for exe in sorted(e for e in exes if e not in lib):
        outcome, out = run(exe, SRC / "server", timeout)
        if outcome != "missed":
            return outcome, out
    return "missed", ""


# ---------------------------------------------------------------------------------------------
# Results

def read_results():
    rows = {}
    if RESULTS.exists():
        for line in RESULTS.read_text().splitlines():
            if not line or line.startswith("#") or line.startswith("file\t"):
                continue
            row = dict(zip(COLUMNS, line.split("\t")))
            rows[key_of(row["file"], row["line"], row["col"], row["mutation"])] = row
    return rows


def append_result(row):
    """One line, appended under a lock: shards running side by side share the file."""
    with open(RESULTS, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        if f.tell() == 0:
            f.write("\t".join(COLUMNS) + "\n")
        f.write("\t".join(row.get(c, "") for c in COLUMNS) + "\n")


def write_results(rows):
    """Rewrites the file sorted, one line per mutant (the latest judgement)."""
    lines = ["\t".join(COLUMNS)]
    for row in sorted(rows.values(), key=lambda r: (r["file"], int(r["line"]), int(r["col"]), r["mutation"])):
        lines.append("\t".join(row.get(c, "") for c in COLUMNS))
    RESULTS.write_text("\n".join(lines) + "\n")


def read_reasons():
    reasons = {}
    if REASONS.exists():
        for line in REASONS.read_text().splitlines():
            if line and not line.startswith("#"):
                key, verdict, reason = line.split("\t", 2)
                if verdict not in VERDICTS:
                    sys.exit(f"{REASONS}: `{verdict}` is not a verdict ({', '.join(VERDICTS)}): {key}")
                reasons[key] = (verdict, reason)
    return reasons


def classify(row):
    if row["catalogue"] == "unviable":
        return "unviable"
    if row["catalogue"] in CAUGHT:
        return "catalogue"
    if row["server"] in CAUGHT:
        return "server only"
    if row["server"] == "missed":
        return "missed"
    return "missed by the catalogue (server tests not run)"


def write_table(mutants, rows):
    reasons = read_reasons()
    current = {m["key"] for m in mutants}
    per_file = {}
    for m in mutants:
        name = Path(m["file"]).name
        per_file.setdefault(name, {k: 0 for k in COUNTS})
        per_file[name]["generated"] += 1
        row = rows.get(m["key"])
        if row:
            per_file[name]["judged"] += 1
            kind = classify(row)
            per_file[name][kind] += 1
            if kind not in ("catalogue", "unviable"):
                per_file[name]["verdict " + reasons.get(m["key"], ("open", ""))[0]] += 1
    out = ["# Mutants of the auth core: outcomes",
           "",
           "Generated by `tests/mutants/run.sh --table` from `results.tsv`; do not edit by hand.",
           "A mutant is *caught by the catalogue* when `cargo test -p usher-tests --test conformance`",
           "(with `USHER_STRICT=1 USHER_HOLD_CHOICES=1`: `@should` and `@info` cases count, the reference held to its own choices on the spec's open points; when that passes, also the cluster cases, `--test cluster_suite`)",
           "fails or times out; *server only* when the catalogue passes and",
           "`cargo test -p usher-server` fails. Scores are over the judged viable mutants.",
           "",
           "| File | Generated | Judged | Unviable | Caught by the catalogue | Caught only by server tests | Missed by both | Missed by the catalogue, server tests not run | Catalogue score |",
           "|---|---|---|---|---|---|---|---|---|"]
    total = {k: 0 for k in COUNTS} if per_file else {}
    for name in FILES:
        if name not in per_file:
            continue
        c = per_file[name]
        for k in total:
            total[k] += c[k]
        out.append(table_row(name, c))
    spec = {k: sum(per_file[n][k] for n in per_file if n in SPEC_FILES) for k in total}
    out.append(table_row("**spec files** (" + ", ".join(sorted(SPEC_FILES)) + ")", spec))
    out.append(table_row("**all**", total))
    out += ["", "## Score over the behaviours a case may fail on", "",
            "Of the judged viable mutants, those the catalogue missed are sorted by their verdict in",
            "`survivors.tsv`. A mutant that changes nothing (equivalent), nothing a client or backend can",
            "see within a case's bounds (unobservable), or only a server extension outside the contract or",
            "an open point no case can pin within its bounds (unspecified) is out of the catalogue's reach;",
            "the last score is the catalogue's catches over the catches plus the survivors still *open*.",
            "The score without equivalents is the usual mutation score: catches over the viable mutants",
            "that change behaviour.", "",
            "| Files | Caught | Open | Equivalent | Unobservable | Unspecified | Score without equivalents | Score over caught + open |",
            "|---|---|---|---|---|---|---|---|"]
    for name in FILES:
        if name in per_file and per_file[name]["judged"]:
            out.append(verdict_row(name, per_file[name]))
    out.append(verdict_row("**spec files**", spec))
    out.append(verdict_row("**all**", total))
    out += ["", "## Not caught by the catalogue", "",
            "`reason` comes from `survivors.tsv` (equivalent: no behaviour changes; unobservable:",
            "changes nothing a client or backend can see; unspecified: a server extension outside the",
            "contract, or an open point no case can pin within its bounds; open: not yet killed or explained).", "",
            "| Mutant | Server tests | Verdict | Reason |", "|---|---|---|---|"]
    for m in mutants:
        row = rows.get(m["key"])
        if not row or classify(row) in ("catalogue", "unviable"):
            continue
        verdict, reason = reasons.get(m["key"], ("open", ""))
        out.append(f"| `{m['key']}` | {row['server']} | {verdict} | {reason} |")
    stale = [k for k in rows if k not in current]
    if stale:
        out += ["", f"{len(stale)} result line(s) name mutants the current source no longer has (stale, not counted)."]
    TABLE.write_text("\n".join(out) + "\n")


def verdict_row(name, c):
    caught, open_ = c["catalogue"], c["verdict open"]
    score = f"{100 * caught / (caught + open_):.1f} %" if caught + open_ else "-"
    behaving = caught + open_ + c["verdict unobservable"] + c["verdict unspecified"]
    standard = f"{100 * caught / behaving:.1f} %" if behaving else "-"
    return (f"| {name} | {caught} | {open_} | {c['verdict equivalent']} | {c['verdict unobservable']} | "
            f"{c['verdict unspecified']} | {standard} | {score} |")


def table_row(name, c):
    viable = c["judged"] - c["unviable"]
    score = f"{100 * c['catalogue'] / viable:.1f} %" if viable else "-"
    return (f"| {name} | {c['generated']} | {c['judged']} | {c['unviable']} | {c['catalogue']} | {c['server only']} | "
            f"{c['missed']} | {c['missed by the catalogue (server tests not run)']} | {score} |")


def server_baseline(timeout):
    """The server's tests must pass on the unmutated tree before they judge a mutant."""
    log("baseline: the server's tests against the unmutated tree")
    started = time.monotonic()
    base, out = server_tests(timeout)
    if base != "missed":
        sys.exit(f"the baseline server tests did not pass ({base})\n{out[-4000:]}")
    log(f"baseline passed ({time.monotonic() - started:.0f} s including the build); test timeout {timeout:.0f} s")


def judge_server_only(todo, rows, timeout):
    """The server's own tests on mutants the catalogue missed: what the issue calls caught
    only by the server's tests. The catalogue's verdict in the row is kept."""
    server_baseline(timeout)
    try:
        for i, m in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] {m['key']} (server tests only)")
            t0 = time.monotonic()
            with mutated(m):
                srv = server_tests(timeout)[0]
            rows[m["key"]] = {**rows[m["key"]], "server": srv}
            append_result(rows[m["key"]])
            log(f"    server {srv} ({time.monotonic() - t0:.0f} s)")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); the private tree is restored, results so far are kept")


# ---------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shard", default="0/1", help="K/N: judge only the mutants whose index is K modulo N")
    p.add_argument("--files", default=",".join(FILES), help="comma-separated files of server/src/auth, in the order to run them")
    p.add_argument("--server-tests", choices=["missed", "all", "none"], default="missed",
                   help="when to run `cargo test -p usher-server`: for mutants the catalogue missed (default), always, never")
    p.add_argument("--rejudge", choices=["missed", "open"], help="judge again the mutants the catalogue missed (all of them, or those without a reason in survivors.tsv)")
    p.add_argument("--match", action="append", default=[], metavar="TEXT",
                   help="judge only mutants whose key contains TEXT (repeatable: any of them)")
    p.add_argument("--server-only", action="store_true",
                   help="judge with the server's own tests only the mutants the catalogue already missed and the server's tests have not judged (no catalogue run)")
    p.add_argument("--limit", type=int, help="stop after judging this many mutants")
    p.add_argument("--timeout", type=float, help="seconds for one test run (default: 3 x the baseline catalogue run, at least 180)")
    p.add_argument("--table", action="store_true", help="only regenerate results.md from results.tsv")
    p.add_argument("--list", action="store_true", help="only print the mutants this invocation would judge")
    args = p.parse_args()
    k, n = (int(x) for x in args.shard.split("/"))
    global SRC, TARGET
    if n > 1:
        SRC = WORK / f"shard-{k}-of-{n}" / "src"
        TARGET = WORK / f"shard-{k}-of-{n}" / "target"
    if args.table or args.list:
        # Listing needs a copy of HEAD too, but never the one a running shard is mutating.
        SRC = WORK / "listing" / "src"
    files = [f.strip() for f in args.files.split(",") if f.strip()]
    for f in files:
        if f not in FILES:
            sys.exit(f"unknown file {f}: one of {', '.join(FILES)}")

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)

    SRC.mkdir(parents=True, exist_ok=True)
    sync_snapshot()
    all_mutants = list_mutants(FILES)
    rows = read_results()
    if args.table:
        write_results(rows)
        write_table(all_mutants, rows)
        log(f"wrote {TABLE}")
        return
    wanted = set(files)
    todo = []
    reasons = read_reasons()
    for index, m in enumerate(all_mutants):
        if index % n != k or Path(m["file"]).name not in wanted:
            continue
        if args.match and not any(text in m["key"] for text in args.match):
            continue
        row = rows.get(m["key"])
        if args.server_only:
            if row and row["catalogue"] == "missed" and row["server"] == "-":
                todo.append(m)
            continue
        if row:
            rejudge = args.rejudge and classify(row) not in ("catalogue", "unviable") and (
                args.rejudge == "missed" or reasons.get(m["key"], ("open", ""))[0] == "open")
            if not rejudge:
                continue
        todo.append(m)
    todo.sort(key=lambda m: files.index(Path(m["file"]).name))
    if args.limit:
        todo = todo[:args.limit]
    log(f"{len(all_mutants)} mutants in server/src/auth's listed files; {len(rows)} judged; {len(todo)} to judge in shard {k}/{n}")
    if args.list:
        for m in todo:
            print(m["key"])
        return
    if not todo:
        write_table(all_mutants, read_results())
        return

    seed_target()
    auth_tree = git("rev-parse", "--short", "HEAD:server/src/auth")
    if args.server_only:
        judge_server_only(todo, rows, args.timeout or 300.0)
        write_table(all_mutants, read_results())
        return
    log("baseline: the catalogue against the unmutated tree")
    started = time.monotonic()
    base = catalogue(timeout=args.timeout or 1800)
    if base[0] != "missed":
        sys.exit(f"the baseline catalogue run did not pass ({base[0]}); failed: {base[2]}\n{base[1][-4000:]}")
    elapsed = time.monotonic() - started
    timeout = args.timeout or max(180.0, 3 * elapsed)
    log(f"baseline passed ({elapsed:.0f} s including the build); test timeout {timeout:.0f} s")
    server_baseline_done = args.server_tests == "none"

    try:
        for i, m in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] {m['key']}")
            t0 = time.monotonic()
            with mutated(m) as (path, original):
                cat, _, failed = catalogue(timeout)
                srv = "-"
                if cat == "unviable":
                    srv = "unviable"
                elif args.server_tests == "all" or (args.server_tests == "missed" and cat == "missed"):
                    if not server_baseline_done:
                        path.write_text(original)
                        server_baseline(timeout)
                        server_baseline_done = True
                        apply(m)
                    srv = server_tests(timeout)[0]
            previous = rows.get(m["key"])
            if srv == "-" and cat == "missed" and previous and previous["server"] not in ("-", "unviable"):
                # A re-judgment by the catalogue alone keeps what the server's tests said (they
                # do not depend on the catalogue).
                srv = previous["server"]
            rows[m["key"]] = {
                "file": m["file"], "line": str(m["span"]["start"]["line"]), "col": str(m["span"]["start"]["column"]),
                "function": (m.get("function") or {}).get("function_name", "-"), "mutation": mutation_of(m),
                "catalogue": cat, "server": srv, "auth_tree": auth_tree, "failed_cases": " ".join(failed[:5]) or "-",
            }
            append_result(rows[m["key"]])
            log(f"    catalogue {cat}, server {srv} ({time.monotonic() - t0:.0f} s){' - ' + ' '.join(failed[:3]) if failed else ''}")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); the private tree is restored, results so far are kept")
    finally:
        write_table(all_mutants, read_results())  # every shard's rows, not only this one's


if __name__ == "__main__":
    main()
