//! Which network namespaces a view (`ss`, `top`) shows: those named with
//! -N/--netns, or the caller's own, as `ss` shows its own.
use std::{collections::BTreeMap, path::Path};

use crate::{
    cli::NetnsArgs,
    host::namespaces::{NamespacesError, RUN_NETNS},
    host::netns,
    model::tuple::NetnsInode,
};

/// The namespaces asked for, each with the name it was given by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewNamespaces {
    labels: BTreeMap<NetnsInode, String>,
}

impl ViewNamespaces {
    /// Resolves -N names under /run/netns; inodes are taken as given (the
    /// agent, or the in-process listing, says if one does not exist).
    pub fn resolve(args: &NetnsArgs) -> Result<Self, NamespacesError> {
        let mut labels = BTreeMap::new();
        for name in &args.names {
            labels.insert(
                netns::inode_of_name(Path::new(RUN_NETNS), name)?,
                name.clone(),
            );
        }
        for &inode in &args.inodes {
            labels.entry(inode).or_insert_with(|| inode.to_string());
        }
        if labels.is_empty() {
            let own = netns::own().map_err(NamespacesError::Own)?;
            labels.insert(own, own.to_string());
        }
        Ok(ViewNamespaces { labels })
    }

    pub fn inodes(&self) -> Vec<NetnsInode> {
        self.labels.keys().copied().collect()
    }

    /// More than one: output must say which a socket is in.
    pub fn several(&self) -> bool {
        self.labels.len() > 1
    }

    /// The name a namespace was asked for by.
    pub fn label(&self, netns: NetnsInode) -> String {
        self.labels
            .get(&netns)
            .cloned()
            .unwrap_or_else(|| netns.to_string())
    }

    /// All of them, for a title line.
    pub fn title(&self) -> String {
        let names: Vec<&str> = self.labels.values().map(String::as_str).collect();
        format!("netns {}", names.join(", "))
    }

    /// The same selection as -N/--netns options, for an in-process tracer.
    pub fn as_args(&self) -> NetnsArgs {
        NetnsArgs {
            names: Vec::new(),
            inodes: self.inodes(),
        }
    }
}
