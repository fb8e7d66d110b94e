//! Who is asking: an authenticated client's identity and scopes.

/// F3548 scopes, and Detente's own for the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    StrategicCoordination,
    ConstraintManagement,
    ConstraintProcessing,
    ConformanceMonitoringSa,
    AvailabilityArbitration,
    /// A duty officer: reads the line, relays member-signed messages and
    /// acknowledgements.
    LineMember,
    /// The party's line administrator: peers, members, the host's
    /// accreditation decisions, channel notices.
    LineAdmin,
    /// A monitoring system reading `/metrics`, where the node keeps them
    /// private (`private_metrics`).
    Metrics,
    /// F3411 (remote ID) ISA read and write: Detente serves no remote ID,
    /// but DSS pool tooling checks tokens with them (`/aux/v1/validate_oauth`).
    IsaRead,
    IsaWrite,
}

impl Scope {
    /// The F3548 scopes.
    pub const ALL: [Scope; 5] = [
        Scope::StrategicCoordination,
        Scope::ConstraintManagement,
        Scope::ConstraintProcessing,
        Scope::ConformanceMonitoringSa,
        Scope::AvailabilityArbitration,
    ];
    /// Detente's scopes for the line.
    pub const LINE: [Scope; 2] = [Scope::LineMember, Scope::LineAdmin];
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::StrategicCoordination => "utm.strategic_coordination",
            Scope::ConstraintManagement => "utm.constraint_management",
            Scope::ConstraintProcessing => "utm.constraint_processing",
            Scope::ConformanceMonitoringSa => "utm.conformance_monitoring_sa",
            Scope::AvailabilityArbitration => "utm.availability_arbitration",
            Scope::LineMember => "detente.line",
            Scope::LineAdmin => "detente.line.admin",
            Scope::Metrics => "detente.metrics",
            Scope::IsaRead => "dss.read.identification_service_areas",
            Scope::IsaWrite => "dss.write.identification_service_areas",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL
            .into_iter()
            .chain(Scope::LINE)
            .chain([Scope::Metrics, Scope::IsaRead, Scope::IsaWrite])
            .find(|x| x.as_str() == s)
    }
}

/// An authenticated client: its `sub` (the manager of what it writes) and scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub sub: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn has(&self, s: Scope) -> bool {
        self.scopes.contains(&s)
    }
}
