//! The thread actor's part in its thread, named. One node alone, or in
//! cluster mode a mirror of another node's answers, a node taking the
//! lease for a question, or the lease's owner: each decision that depends
//! on it (may a question start, is a frame from another node mirrored,
//! may a subscriber be served, does a released lease leave an answer to
//! end) is a pure function here, tested without Postgres or Redis.
//!
//! Whether other nodes' frames reach this node (`linked`) is not a role:
//! an owner that loses Redis keeps its answer and its own subscribers.

/// The actor's part; `L` is what an owner holds (its lease).
#[derive(Debug, PartialEq)]
pub enum Role<L> {
    /// One node (no `--redis-url`): the actor runs its thread's answers,
    /// and holds no lease.
    Alone,
    /// Cluster mode, holding no lease: it mirrors the frames of whichever
    /// node runs the thread's answer.
    Mirror,
    /// Cluster mode: a question on this node is taking the lease.
    Starting,
    /// Cluster mode: it holds the thread's lease, and runs its answer (or
    /// has just ended it and lets the lease go once that is committed).
    Owner(L),
}

/// Why a question cannot start here now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNow {
    /// An answer runs, or is being started.
    Busy,
    /// Cluster mode: the other nodes cannot be heard.
    Unlinked,
}

impl<L> Role<L> {
    /// The part of a new actor.
    pub fn new(clustered: bool) -> Role<L> {
        if clustered {
            Role::Mirror
        } else {
            Role::Alone
        }
    }

    /// The lease, while it owns one.
    pub fn lease(&self) -> Option<&L> {
        match self {
            Role::Owner(lease) => Some(lease),
            _ => None,
        }
    }

    pub fn lease_mut(&mut self) -> Option<&mut L> {
        match self {
            Role::Owner(lease) => Some(lease),
            _ => None,
        }
    }

    /// Gives up the lease (if owned): the actor mirrors from now on.
    /// Any other part is left as it is.
    pub fn stop_owning(&mut self) -> Option<L> {
        match self {
            Role::Owner(_) => match std::mem::replace(self, Role::Mirror) {
                Role::Owner(lease) => Some(lease),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether a question may start here (in cluster mode it still has to
    /// take the lease). `generating`: this actor runs an answer;
    /// `running`: its conversation has one streaming (alone, that is
    /// exact; in cluster mode the lease decides, a mirror may be a frame
    /// behind).
    pub fn admits_question(&self, generating: bool, running: bool, linked: bool) -> Result<(), NotNow> {
        match self {
            _ if generating => Err(NotNow::Busy),
            Role::Starting => Err(NotNow::Busy),
            Role::Alone if running => Err(NotNow::Busy),
            Role::Alone => Ok(()),
            Role::Mirror | Role::Owner(_) if !linked => Err(NotNow::Unlinked),
            Role::Mirror | Role::Owner(_) => Ok(()),
        }
    }

    /// Whether a frame another node published in `epoch` is mirrored: not
    /// while this node owns the thread (it would be a stale owner's), nor
    /// one of an older owner than already heard.
    pub fn mirrors(&self, epoch: u64, seen_epoch: u64) -> bool {
        !matches!(self, Role::Owner(_)) && epoch >= seen_epoch
    }

    /// Whether a new subscriber can be served: not when the other nodes
    /// cannot be heard, unless this node runs the answer itself
    /// (`fanout_linked`: the link is up right now).
    pub fn serves(&self, linked: bool, fanout_linked: bool) -> bool {
        match self {
            Role::Alone => true,
            Role::Owner(_) => linked,
            Role::Mirror | Role::Starting => linked && fanout_linked,
        }
    }

    /// Whether an answer still streaming, whose owner let its lease go,
    /// is this node's to end (the first node to take the lease does).
    pub fn ends_abandoned(&self, generating: bool, running: bool) -> bool {
        running && !generating && matches!(self, Role::Mirror | Role::Starting)
    }

    /// Whether this node may take over an answer whose owner is gone.
    pub fn may_take_over(&self, generating: bool) -> bool {
        !generating && matches!(self, Role::Mirror)
    }

    /// Whether losing the link to the other nodes stops the actor (a
    /// mirror can serve nothing without it; an owner goes on for its own
    /// subscribers).
    pub fn stops_when_unlinked(&self) -> bool {
        matches!(self, Role::Mirror | Role::Starting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Role<u64>;

    #[test]
    fn one_node_alone_is_busy_exactly_while_an_answer_runs() {
        let alone = R::new(false);
        assert_eq!(alone, Role::Alone);
        assert_eq!(alone.admits_question(false, false, true), Ok(()));
        assert_eq!(alone.admits_question(false, true, true), Err(NotNow::Busy));
        assert_eq!(alone.admits_question(true, true, true), Err(NotNow::Busy));
        // The link does not concern one node.
        assert_eq!(alone.admits_question(false, false, false), Ok(()));
        assert!(alone.serves(false, false));
    }

    #[test]
    fn in_cluster_mode_the_lease_decides_not_the_mirror() {
        let mirror = R::new(true);
        assert_eq!(mirror, Role::Mirror);
        // A mirror that sees an answer running may be a frame behind: the
        // lease will say.
        assert_eq!(mirror.admits_question(false, true, true), Ok(()));
        assert_eq!(mirror.admits_question(false, false, false), Err(NotNow::Unlinked));
        assert_eq!(R::Starting.admits_question(false, false, true), Err(NotNow::Busy));
        assert_eq!(R::Owner(3).admits_question(true, true, true), Err(NotNow::Busy));
        // An owner whose answer ended lets its lease go soon: a question
        // goes on to take it.
        assert_eq!(R::Owner(3).admits_question(false, false, true), Ok(()));
    }

    #[test]
    fn only_a_non_owner_mirrors_and_never_an_older_owner() {
        assert!(R::Mirror.mirrors(2, 2));
        assert!(R::Mirror.mirrors(3, 2));
        assert!(!R::Mirror.mirrors(1, 2), "a stale owner's frame");
        assert!(!R::Owner(2).mirrors(2, 2), "while owning, others' frames are stale");
        assert!(R::Starting.mirrors(2, 2));
    }

    #[test]
    fn a_mirror_serves_only_while_linked_an_owner_serves_its_own() {
        assert!(R::Mirror.serves(true, true));
        assert!(!R::Mirror.serves(true, false), "the link is down right now");
        assert!(!R::Mirror.serves(false, true));
        assert!(R::Owner(1).serves(true, false), "its own answer needs no link");
        assert!(!R::Owner(1).serves(false, true));
        assert!(R::Mirror.stops_when_unlinked());
        assert!(!R::Owner(1).stops_when_unlinked());
    }

    #[test]
    fn an_abandoned_answer_is_ended_by_a_node_that_does_not_run_it() {
        assert!(R::Mirror.ends_abandoned(false, true));
        assert!(!R::Mirror.ends_abandoned(false, false), "nothing runs");
        assert!(!R::Owner(1).ends_abandoned(false, true));
        assert!(!R::Alone.ends_abandoned(false, true));
        assert!(R::Mirror.may_take_over(false));
        assert!(!R::Owner(1).may_take_over(false));
        assert!(!R::Mirror.may_take_over(true));
    }

    #[test]
    fn giving_up_the_lease_makes_an_owner_a_mirror() {
        let mut owner = R::Owner(7);
        assert_eq!(owner.lease(), Some(&7));
        assert_eq!(owner.stop_owning(), Some(7));
        assert_eq!(owner, Role::Mirror);
        let mut alone = R::Alone;
        assert_eq!(alone.stop_owning(), None);
        assert_eq!(alone, Role::Alone, "one node stays alone");
        let mut starting = R::Starting;
        assert_eq!(starting.stop_owning(), None);
        assert_eq!(starting, Role::Starting, "a question taking the lease goes on taking it");
    }
}
