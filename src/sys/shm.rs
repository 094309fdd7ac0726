//! A page of shared memory (a sealed-size memfd mapped by the daemon and
//! one worker) holding counters both sides update with plain atomics: the
//! worker counts the connections it closes there, the daemon reads them
//! while picking a worker, and no message crosses the channel for it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU64;

use super::cvt;

/// Size of the page, in bytes.
pub const PAGE: usize = 4096;

/// Counters in the page.
pub const WORDS: usize = PAGE / 8;

/// A mapped counters page and the memfd behind it.
pub struct SharedPage {
    fd: OwnedFd,
    base: *mut AtomicU64,
}

// SAFETY: the mapping is only ever accessed through `AtomicU64`s, which are
// Sync; the pointer itself is never re-targeted while the page lives.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// A new zeroed page (close-on-exec memfd; pass it to a child as one of
    /// its inherited descriptors).
    pub fn new(name: &str) -> io::Result<SharedPage> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in memfd name"))?;
        // SAFETY: memfd_create takes a NUL-terminated name and flags.
        let fd = cvt(unsafe {
            libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })?;
        // SAFETY: fd is fresh and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate/fcntl on our fd. Sealing the size means neither
        // side can shrink the file under the other's mapping (SIGBUS).
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) })?;
        // SAFETY: as above.
        cvt(unsafe {
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        })?;
        Self::map(fd)
    }

    /// Maps a page received from the daemon (a worker's inherited
    /// descriptor). Refuses anything but a memfd whose size is sealed at
    /// least [`PAGE`] bytes.
    pub fn from_fd(fd: OwnedFd) -> io::Result<SharedPage> {
        check_page(fd.as_raw_fd())?;
        Self::map(fd)
    }

    /// Takes ownership of inherited descriptor number `fd` (named by
    /// `HERD_COUNTERS_FD`) and maps it, once it is checked to be a page.
    pub fn take_inherited(fd: i32) -> io::Result<SharedPage> {
        check_page(fd)?;
        // SAFETY: fd is open (fcntl and fstat succeeded on it) and was
        // passed to this process to own by the protocol that named it.
        Self::map(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn map(fd: OwnedFd) -> io::Result<SharedPage> {
        // SAFETY: a fresh shared mapping of PAGE bytes of a file at least
        // that long (checked or set by the callers, and sealed against
        // shrinking, so access never faults).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedPage { fd, base: p.cast() })
    }

    /// Counter `i` (`i < WORDS`).
    pub fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS, "counter {i} is outside the page");
        // SAFETY: base is page-aligned and PAGE bytes long, so word i is in
        // bounds and 8-byte aligned; the mapping lives as long as &self.
        unsafe { &*self.base.add(i) }
    }
}

/// A sealed-size memfd of at least [`PAGE`] bytes (an fd that is not open
/// is an error, not undefined behaviour).
fn check_page(fd: i32) -> io::Result<()> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("fd {fd}: {why}"));
    // SAFETY: fcntl on any int only reads the fd table.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
        return Err(bad(
            "not a herd counters page (a memfd with its size sealed)",
        ));
    }
    // SAFETY: fstat fills a zeroed stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into st, which outlives the call.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    if (st.st_size as u64) < PAGE as u64 {
        return Err(bad("herd counters page is too small"));
    }
    Ok(())
}

impl AsFd for SharedPage {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: base/PAGE is exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.cast(), PAGE) };
    }
}

impl std::fmt::Debug for SharedPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPage")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_see_each_others_counters() {
        let a = SharedPage::new("herd-test").unwrap();
        let b = SharedPage::from_fd(a.as_fd().try_clone_to_owned().unwrap()).unwrap();
        a.word(1).fetch_add(5, Ordering::Relaxed);
        b.word(1).fetch_add(2, Ordering::Relaxed);
        assert_eq!(a.word(1).load(Ordering::Relaxed), 7);
        assert_eq!(b.word(0).load(Ordering::Relaxed), 0, "zeroed");
        b.word(WORDS - 1).store(9, Ordering::Relaxed);
        assert_eq!(a.word(WORDS - 1).load(Ordering::Relaxed), 9);
    }

    #[test]
    fn refuses_what_is_not_a_sealed_page() {
        let (s, _) = crate::sys::fdpass::socketpair(crate::sys::fdpass::PairKind::Stream).unwrap();
        assert!(SharedPage::from_fd(s).is_err());
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(SharedPage::from_fd(f.into()).is_err());
    }

    #[test]
    #[should_panic(expected = "outside the page")]
    fn a_word_past_the_page_panics() {
        let a = SharedPage::new("herd-test").unwrap();
        a.word(WORDS);
    }
}
