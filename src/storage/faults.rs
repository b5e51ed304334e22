//! Fault injection for the storage tests: named points in the file layer
//! (`wal.write`, `wal.fsync`, `block.write`, `block.rename`, …) that a test
//! arms to fail on cue, so that disk-full, failed renames and fsync errors
//! can be driven through the real code paths.
//!
//! Armed per thread (tests run in parallel, and the storage paths under test
//! run on the test's own thread). In non-test builds [`check`] is a no-op
//! the compiler removes.

use std::io;

#[cfg(test)]
thread_local! {
    static ARMED: std::cell::RefCell<Vec<Fault>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
struct Fault {
    point: &'static str,
    /// Calls to let through before failing.
    skip: usize,
    /// Failures left (then the point works again).
    times: usize,
    kind: io::ErrorKind,
    /// Instead of failing, stall this long (a slow disk).
    delay: Option<std::time::Duration>,
    /// Fail with this OS error number (EMFILE, ENOMEM, …) instead of `kind`.
    errno: Option<i32>,
}

/// Fail the point `point` once with the OS error `errno` (24 = EMFILE).
#[cfg(test)]
pub fn arm_errno(point: &'static str, errno: i32) {
    push(Fault {
        point,
        skip: 0,
        times: 1,
        kind: io::ErrorKind::Other,
        delay: None,
        errno: Some(errno),
    });
}

/// Stall the point `point` once for `delay` (a slow fsync or rename).
#[cfg(test)]
pub fn arm_delay(point: &'static str, delay: std::time::Duration) {
    push(Fault {
        point,
        skip: 0,
        times: 1,
        kind: io::ErrorKind::Other,
        delay: Some(delay),
        errno: None,
    });
}

/// Fail the point `point` after `skip` successful calls, `times` times,
/// with an error of `kind` (e.g. `StorageFull` for disk full).
#[cfg(test)]
pub fn arm(point: &'static str, skip: usize, times: usize, kind: io::ErrorKind) {
    push(Fault {
        point,
        skip,
        times,
        kind,
        delay: None,
        errno: None,
    });
}

#[cfg(test)]
fn push(fault: Fault) {
    ARMED.with(|armed| armed.borrow_mut().push(fault));
}

/// Disarm every point on this thread.
#[cfg(test)]
pub fn clear() {
    ARMED.with(|armed| armed.borrow_mut().clear());
}

/// Called by the storage code before the operation named `point`.
#[inline]
pub fn check(point: &'static str) -> io::Result<()> {
    #[cfg(test)]
    {
        let failure = ARMED.with(|armed| {
            let mut armed = armed.borrow_mut();
            let fault = armed.iter_mut().find(|f| f.point == point && f.times > 0)?;
            if fault.skip > 0 {
                fault.skip -= 1;
                return None;
            }
            fault.times -= 1;
            Some((fault.kind, fault.delay, fault.errno))
        });
        match failure {
            Some((_, Some(delay), _)) => std::thread::sleep(delay),
            Some((_, None, Some(errno))) => return Err(io::Error::from_raw_os_error(errno)),
            Some((kind, None, None)) => {
                return Err(io::Error::new(kind, format!("injected fault at {point}")))
            }
            None => {}
        }
    }
    let _ = point;
    Ok(())
}
