//! The process: starting shard threads and stopping them ([`lifecycle`]), the drain and
//! idle exit ([`drain`]), handing listeners to a successor ([`upgrade`]), the registry's
//! Redis client threads ([`registry`]), and `edge-engine sign` ([`sign`]).
//!
//! Must not: run on a shard (these are the main and helper threads).

pub(crate) mod drain;
pub(crate) mod lifecycle;
pub(crate) mod registry;
pub(crate) mod sign;
pub(crate) mod upgrade;
