//! The command line as a script meets it: exit status, which stream, and what the
//! message says. Nothing here starts a network (a bad command line stops before that).

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandrun-devnet"))
        // A data dir that must never be created: every case here stops before it.
        .args(["--data-dir", "/nonexistent/sandrun-devnet-cli-test"])
        .args(args)
        .output()
        .expect("run sandrun-devnet")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    for flag in ["--help", "-h"] {
        let o = run(&[flag]);
        assert_eq!(o.status.code(), Some(0), "{flag}");
        let out = text(&o.stdout);
        for f in ["--workers <N>", "--fault <INDEX=MODE>", "hijack-payout", "--unchecked-registry", "--chain", "[default: 3]"] {
            assert!(out.contains(f), "{f} not in {flag} output:\n{out}");
        }
        assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    }
}

#[test]
fn bad_command_lines_exit_2_and_say_why() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unexpected argument '--bogus'"),
        (&["--worker", "2"], "'--workers'"),
        (&["--workers", "many"], "invalid value 'many' for '--workers <N>'"),
        (&["--fault", "1=bogus"], "unknown mode bogus"),
        (&["--fault", "wrong-output"], "wants INDEX=MODE"),
        (&["--capabilities", "1={"], "bad JSON"),
        (&["--json", "--slow-ms"], "a value is required for '--slow-ms <MS>'"),
        (&["--workers", "2", "--fault", "2=slow"], "worker index 2 out of range (0..2)"),
        (&["--workers", "2", "--fault", "0=relay"], "--fault 0=relay: this fault targets worker 0"),
    ];
    for (args, wanted) in cases {
        let o = run(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(wanted), "{args:?}: {wanted:?} not in {err:?}");
        assert!(o.stdout.is_empty(), "{args:?}: stdout {:?}", text(&o.stdout));
    }
}
