//! The process: starting shard threads and stopping them ([`lifecycle`]), the drain and
//! idle exit ([`drain`]), handing listeners to a successor ([`upgrade`]), the registry's
//! Redis client threads ([`registry`]), and `edge-engine sign` ([`sign`]).
//!
//! Must not: run on a shard (these are the main and helper threads).

pub mod drain;
pub mod lifecycle;
pub mod registry;
pub mod sign;
pub mod upgrade;
