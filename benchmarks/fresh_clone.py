"""Time the README's main command on a fresh clone, and publish the report it writes (issue 24).

    python benchmarks/fresh_clone.py                     # clone HEAD, make install, make reproduce, publish
    python benchmarks/fresh_clone.py --work /tmp/repro   # where the clone goes (default: a temporary folder)
    python benchmarks/fresh_clone.py --update /tmp/repro # bring that clone to HEAD and run `make reproduce` again
    python benchmarks/fresh_clone.py --resume /tmp/repro --stopped 3e8c714 5231 "why"   # finish a stopped run

`--update` keeps the clone's runs: `make reproduce` then reruns only the experiments whose notebook, config,
trained models, prior or scored released models changed (each experiment's fingerprint), which is how a new
release is re-scored without the hour of training that did not change. The published `reproduce.json` keeps the
fresh clone's timings and lists each update (commit, minutes, the experiments rerun).

`--resume` finishes a fresh clone whose `make reproduce` was stopped before it wrote its report (a session's
end, a reboot): it brings the clone to HEAD and runs `make reproduce` again, which keeps every experiment and
trained model the stopped sittings finished. Each stopped sitting is given on the command line (`--stopped
COMMIT SECONDS WHY`, once per sitting: the commit it ran, its wall seconds, why it stopped and what else ran
beside it); `reproduce.json` records every sitting, and its `fresh_clone_seconds` is their sum.

Run it alone on the machine: its minutes are the ones the README states. The clone is of the committed
HEAD, so uncommitted changes are not measured. On success it replaces the published report in
`benchmarks/results/reproduce_mini/` (`digseg.report.publish_report`; the `quick/` report is measured
separately and kept) and adds the clone's timings to its `reproduce.json`.
"""
import argparse, json, shutil, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import cpu_name   # the minutes depend on the machine: a step of the mini recipe took 0.16 s on one 2-core VM, 0.68 s on another

ROOT = Path(__file__).resolve().parents[1]


def head_commit(work: Path) -> str:
    "The short commit a clone has checked out: the code its report measured."
    return subprocess.run(["git", "-C", str(work), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def timed(cmd: list, cwd: Path, log: Path):
    "Run `cmd` in `cwd` with its output in `log`; return its wall seconds (stop on failure, naming the log)."
    t = time.time()
    with open(log, "w") as f:
        if subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"{' '.join(cmd)} failed in {cwd}: see {log}")
    return time.time() - t


def publish(work: Path, dest: Path, replace: bool=True) -> dict:
    "Publish the clone's report to `dest` (first removing the old one but `quick/`, if `replace`); return its record."
    from digseg.report import publish_report
    for old in (dest.iterdir() if replace and dest.is_dir() else []):   # an experiment that no longer exists leaves nothing behind
        if old.name != "quick": shutil.rmtree(old) if old.is_dir() else old.unlink()
    publish_report(work/"runs"/"mini", dest)
    return json.loads((dest/"reproduce.json").read_text())


def write_record(dest: Path, rec: dict):
    (dest/"reproduce.json").write_text(json.dumps(rec, indent=1) + "\n")


def rerun(work: Path, label: str):
    "Pull HEAD into an existing clone, `make install` and `make reproduce` there; return (commit, reproduce seconds)."
    subprocess.run(["git", "-C", str(work), "pull", "-q", "--ff-only", str(ROOT), "HEAD"], check=True)
    commit = head_commit(work)
    timed(["make", "install"], work, work.parent/f"{label}-{commit}-install.log")   # the fresh clone's logs stay
    return commit, timed(["make", "reproduce"], work, work.parent/f"{label}-{commit}-reproduce.log")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=None, help="folder for the clone (must not exist; default: a temporary folder)")
    p.add_argument("--dest", default=str(ROOT/"benchmarks"/"results"/"reproduce_mini"), help="where the report is published")
    p.add_argument("--update", default=None, help="an earlier --work clone: pull HEAD into it and rerun what changed")
    p.add_argument("--resume", default=None, help="a --work clone whose make reproduce was stopped: finish it")
    p.add_argument("--stopped", nargs=3, action="append", metavar=("COMMIT", "SECONDS", "WHY"), default=[],
                   help="with --resume, once per stopped sitting: its commit, wall seconds (clone to stop) and why it stopped")
    args = p.parse_args(argv)
    if args.update: return update(Path(args.update), Path(args.dest))
    if args.resume:
        return resume(Path(args.resume), Path(args.dest), stopped_sittings(args.stopped))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp())/"repro"
    if work.exists(): raise SystemExit(f"--work: {work} exists; give a new folder")
    t0 = time.time()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
    install = timed(["make", "install"], work, work.parent/"install.log")
    reproduce = timed(["make", "reproduce"], work, work.parent/"reproduce.log")
    total = time.time() - t0
    dest = Path(args.dest)
    rec = publish(work, dest)
    rec.update(commit=head_commit(work), fresh_clone_seconds=round(total), install_seconds=round(install),
               make_reproduce_seconds=round(reproduce), cpu=cpu_name(),
               command="git clone; make install; make reproduce (benchmarks/fresh_clone.py; 2 cores, nothing else running)")
    write_record(dest, rec)
    print(f"fresh clone: {total/60:.1f} min (install {install/60:.1f}, make reproduce {reproduce/60:.1f}); published {dest}")
    print("then: state the minutes in nbs/index.ipynb's Results and run make readme (it inserts the claims table)")


def update(work: Path, dest: Path):
    "Pull HEAD into an earlier clone, rerun `make reproduce` there (complete experiments are skipped), publish."
    if not (work/"runs"/"mini"/"reproduce.json").is_file(): raise SystemExit(f"--update: {work} holds no earlier run (runs/mini/reproduce.json)")
    first = json.loads((dest/"reproduce.json").read_text())   # the published run: its fresh-clone timings stay
    if "fresh_clone_seconds" not in first: raise SystemExit(f"--update: {dest/'reproduce.json'} has no fresh-clone timings to keep")
    t0 = time.time()
    commit, _ = rerun(work, "update")
    rec = publish(work, dest, replace=False)
    ran = [n for n, e in rec["experiments"].items() if not e.get("skipped")]
    keep = ("commit", "fresh_clone_seconds", "install_seconds", "make_reproduce_seconds", "command")
    rec.update({k: first[k] for k in keep if k in first},
               updates=first.get("updates", []) + [{"commit": commit, "seconds": round(time.time() - t0), "rerun": ran,
                                                    "finished": rec.get("finished"), "cpu": cpu_name()}])
    write_record(dest, rec)
    print(f"updated to {commit} in {(time.time() - t0)/60:.1f} min, rerunning {ran}; published {dest}")


def stopped_sittings(given: list):
    "The `--stopped COMMIT SECONDS WHY` triples as sitting records (at least one, each with seconds > 0)."
    if not given: raise SystemExit("--resume needs --stopped COMMIT SECONDS WHY for each stopped sitting")
    out = []
    for commit, seconds, why in given:
        try: sec = float(seconds)
        except ValueError: raise SystemExit(f"--stopped: SECONDS must be a number, got {seconds!r}")
        if sec <= 0: raise SystemExit(f"--stopped: SECONDS must be > 0, got {seconds!r}")
        out.append({"commit": commit, "seconds": round(sec), "stopped": True, "why": why})
    return out


def resume(work: Path, dest: Path, stopped: list):
    "Finish a fresh clone whose `make reproduce` stopped: pull HEAD, `make reproduce` again, publish every sitting."
    if not (work/"runs"/"mini").is_dir(): raise SystemExit(f"--resume: {work} holds no runs/mini to resume")
    if (work/"runs"/"mini"/"reproduce.json").is_file(): raise SystemExit(f"--resume: {work} finished its run; use --update")
    t0 = time.time()
    commit, reproduce = rerun(work, "resume")
    second = time.time() - t0
    rec = publish(work, dest)
    rec.update(fresh_clone_seconds=round(sum(s["seconds"] for s in stopped) + second), make_reproduce_seconds=None,
               install_seconds=None, cpu=cpu_name(),
               sittings=stopped + [{"commit": commit, "seconds": round(second), "make_reproduce_seconds": round(reproduce)}],
               command="git clone; make install; make reproduce, stopped and resumed (benchmarks/fresh_clone.py --resume; 2 cores)")
    write_record(dest, rec)
    print(f"resumed at {commit}: {second/60:.1f} min after {len(stopped)} stopped sitting(s) of "
          f"{sum(s['seconds'] for s in stopped)/60:.1f} min; published {dest}")
    print("then: state the minutes in nbs/index.ipynb's Results and run make readme (it inserts the claims table)")


if __name__ == "__main__":
    main()
