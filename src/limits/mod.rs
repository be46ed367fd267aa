//! What a listener may hold at once, whatever serves it: the bytes of its clients' bodies and
//! messages ([`held`]), and its places for requests, clients and WebSocket sessions ([`places`]).
//! The HTTP path, the sessions and the passthrough listener all count against the same limits,
//! and each tells the gateway's own shortage of resources from a node's failure
//! ([`out_of_local_resources`]).

pub mod held;
pub mod places;

use pingora::Error;

/// Whether a failed connect ran out of the gateway's own resources (file descriptors, local
/// ports, socket buffers) rather than reaching a node that failed.
pub fn out_of_local_resources(e: &Error) -> bool {
    let mut current = e;
    loop {
        let Some(cause) = current.cause.as_deref() else {
            return false;
        };
        // `more_context` keeps the earlier error as the cause, boxed once more.
        if let Some(inner) = cause.downcast_ref::<Box<Error>>() {
            current = inner;
            continue;
        }
        if let Some(inner) = cause.downcast_ref::<Error>() {
            current = inner;
            continue;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(cause);
        while let Some(error) = source {
            let code = error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error);
            if code.is_some_and(|c| {
                [
                    libc::EMFILE,
                    libc::ENFILE,
                    libc::EADDRNOTAVAIL,
                    libc::ENOBUFS,
                ]
                .contains(&c)
            }) {
                return true;
            }
            source = error.source();
        }
        return false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::ErrorType;

    #[test]
    fn running_out_of_descriptors_is_the_gateway_s_own_trouble() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let e = Error::because(ErrorType::ConnectError, "connecting", emfile);
        assert!(out_of_local_resources(&e));
        let wrapped = e.more_context("backend ec-a");
        assert!(out_of_local_resources(&wrapped));
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let e = Error::because(ErrorType::ConnectRefused, "connecting", refused);
        assert!(!out_of_local_resources(&e));
    }
}
