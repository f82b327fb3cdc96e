//! virt-l3: routes libvirt VMs' addresses to the hypervisor they run on.
//!
//! Reading order: [`hook`] (what happens at each libvirt lifecycle step) →
//! [`domain_xml`] (what is read) → [`plan`] (validation and desired state, pure) →
//! [`routing`] (install/remove a domain) → [`kernel`] (the kernel) and
//! [`state`] (records and address ownership). [`nwfilter`] renders the
//! per-NIC libvirt nwfilter security groups; [`guest_config`] the guest side of the routes.

pub mod address;
pub mod check;
pub mod config;
pub mod domain_xml;
pub mod firewall;
pub mod guest_config;
pub mod hook;
pub mod host_facts;
pub mod kernel;
pub mod nwfilter;
pub mod plan;
pub mod reconcile;
pub mod refresh;
pub mod routing;
pub mod security_group;
pub mod state;
pub mod status;
pub mod watch;
