//! Whom a backend connection serves: any client (a shared slot), or one
//! client at a time (a dedicated connection, leased from its server's pool).

use mio::Token;

/// A dedicated connection's holder: the client it serves alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) client: Token,
    pub(crate) release: Release,
}

/// When a leased connection goes back to the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Once its last reply is read (a blocking command; EXEC, DISCARD or
    /// UNWATCH sent).
    WhenIdle,
    /// When the client's transaction state says so (WATCH, MULTI).
    Held,
    /// A subscriber connection: its messages go to the client, and the
    /// server's confirmations are paired with the (un)subscribe commands
    /// sent on it; closed when the client's last subscription on it goes.
    Subscriber,
}

/// Whom a connection serves. A shared connection is never leased; a
/// dedicated one never sits in a shared slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Any client whose slot maps to it: one of its server's shared slots
    /// (or draining out of one after a reload).
    Shared,
    /// Opened for clients of their own, under backend options generation
    /// `options` (a reload that changes them retires it when released):
    /// pooled while `lease` is `None`, else serving that client alone.
    Dedicated { options: u64, lease: Option<Lease> },
}

impl Role {
    /// Shared → dedicated and pooled, opened under `options`.
    pub(crate) fn dedicate(&mut self, options: u64) {
        *self = Role::Dedicated {
            options,
            lease: None,
        };
    }

    pub(crate) fn lease(&self) -> Option<Lease> {
        match self {
            Role::Shared => None,
            Role::Dedicated { lease, .. } => *lease,
        }
    }

    /// Leased to a client, or back in the pool (`None`). A shared
    /// connection is never leased: it keeps serving every client.
    pub(crate) fn set_lease(&mut self, to: Option<Lease>) {
        debug_assert!(
            to.is_none() || *self != Role::Shared,
            "a shared connection leased"
        );
        if let Role::Dedicated { lease, .. } = self {
            *lease = to;
        }
    }

    /// The options generation it was opened under (0 for a shared one:
    /// a reload detaches those by itself).
    pub(crate) fn options(&self) -> u64 {
        match self {
            Role::Shared => 0,
            Role::Dedicated { options, .. } => *options,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dedicated_connection_is_pooled_leased_and_pooled_again() {
        let mut r = Role::Shared;
        assert_eq!((r.lease(), r.options()), (None, 0));
        r.dedicate(3);
        assert_eq!((r.lease(), r.options()), (None, 3), "pooled");
        let lease = Lease {
            client: Token(9),
            release: Release::Held,
        };
        r.set_lease(Some(lease));
        assert_eq!(r.lease(), Some(lease));
        r.set_lease(Some(Lease {
            release: Release::WhenIdle,
            ..lease
        }));
        assert_eq!(r.lease().map(|l| l.release), Some(Release::WhenIdle));
        r.set_lease(None);
        assert_eq!(
            r,
            Role::Dedicated {
                options: 3,
                lease: None
            }
        );
    }
}
