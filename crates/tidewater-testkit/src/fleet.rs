//! A fleet status as a coordinator reports it, for the tests of what shows
//! it (health, metrics, `/api/pools`, the dashboard).

use tidewater::fleet::{FleetMemberStatus, FleetState, FleetStatus};

/// The status of member `a1` of fleet `bank`: three live members (`a1`,
/// `b2`, `c3`) whose grants, 12, 15 and 6, fill the budget of 33
/// connections. Coordinated when `lost` is `None`; degraded, with `lost`
/// as the reason, otherwise (its grant, 12, is then its fallback share).
///
/// ```
/// use tidewater::fleet::FleetState;
/// let status = tidewater_testkit::fleet_status(Some("connection refused"));
/// assert_eq!(status.state, FleetState::Degraded);
/// assert_eq!((status.member.as_str(), status.grant, status.budget), ("a1", 12, 33));
/// assert_eq!(status.members.iter().map(|m| m.grant).sum::<u32>(), status.budget);
/// ```
pub fn fleet_status(lost: Option<&str>) -> FleetStatus {
    let member = |id: &str, grant, held, demand, lease_age_seconds| FleetMemberStatus {
        member: id.into(),
        grant,
        held,
        demand,
        lease_age_seconds,
    };
    FleetStatus {
        fleet: "bank".into(),
        member: "a1".into(),
        state: if lost.is_some() {
            FleetState::Degraded
        } else {
            FleetState::Coordinated
        },
        reason: lost.map(Into::into),
        grant: 12,
        budget: 33,
        members: vec![
            member("a1", 12, 10, 14, 0.4),
            member("b2", 15, 15, 20, 1.5),
            member("c3", 6, 3, 2, 2.5),
        ],
    }
}
