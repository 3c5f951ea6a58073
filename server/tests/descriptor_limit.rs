//! The binary raises its soft descriptor limit to the hard one before it binds (#15 leftover):
//! a shell's soft limit of 1 024 would otherwise cap the connections every listener takes.
//! Its own test binary, since the limit is process-wide.

use usher_server::listener::{descriptor_limit, raise_descriptor_limit};

fn limits() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a pointer to a live, writable local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    limit
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one() {
    let before = limits();
    // Lower the soft limit as a shell might hand it down, unless the hard one is lower still.
    let lowered = before.rlim_max.min(256);
    let low = libc::rlimit {
        rlim_cur: lowered,
        rlim_max: before.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit` from a live local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    assert_eq!(descriptor_limit(), lowered, "the caps would follow the lowered limit");

    let raised = raise_descriptor_limit().expect("raising to the hard limit is always allowed");
    let expected = if before.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        before.rlim_max.min(1 << 20)
    };
    assert_eq!(raised, expected);
    assert_eq!(limits().rlim_cur, expected, "the process's soft limit itself moved");
    assert_eq!(limits().rlim_max, before.rlim_max, "the hard limit is left alone");
    assert_eq!(
        raise_descriptor_limit().expect("again"),
        expected,
        "a second call changes nothing"
    );
}
