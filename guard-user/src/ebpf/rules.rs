//! The policy in the kernel: rule tables (`PATH_RULES`, `NET_RULES`, `TAINT_NET`),
//! the identity entries (`INODE_RULES`, `INODE_COUNT`) and `CONFIG`, installed
//! under two generations so that a new policy replaces the old with no gap.

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
};
use guard_common::{AgentName, Config, NetData, PathData, RuleRef, rules::InodeKey};

use guard_policy::tables::RuleTables;

use super::{Error, Probes, agents::replace_keys, take};

/// The policy's maps: its rule tables, identity entries, digest sizes and
/// settings, and the generation of the rules in force.
pub(super) struct RuleMaps {
    path_rules: LpmTrie<MapData, PathData, RuleRef>,
    net_rules: LpmTrie<MapData, NetData, RuleRef>,
    taint_net: LpmTrie<MapData, NetData, RuleRef>,
    pub(super) config: Array<MapData, Config>,
    /// Rules on concrete files and directories by identity, and their count by
    /// generation (`crate::identity`).
    inode_rules: HashMap<MapData, InodeKey, RuleRef>,
    inode_count: Array<MapData, u32>,
    /// `DIGEST_SIZES`: the file sizes whose execs the kernel holds for a digest.
    digest_sizes: HashMap<MapData, u64, u32>,
    /// `EXEC_WAKE`: the programs whose exec records wake the daemon at once.
    exec_wake: HashMap<MapData, AgentName, u32>,
    /// `OPEN_EPOCH`: the epochs of the kernel's counted repeats of opens
    /// (`guard_common::epoch`); user space moves the rules'.
    open_epoch: Array<MapData, u64>,
    /// Generation of the rules in force.
    generation: u8,
}

impl RuleMaps {
    /// Takes the policy's maps from the loaded object.
    pub(super) fn take(bpf: &mut Ebpf) -> Result<Self, Error> {
        let config: Array<MapData, Config> = take(bpf, "CONFIG")?;
        // Rules an earlier daemon installed are in force under this generation: the
        // next install must write the other one.
        let generation = config
            .get(&0, 0)
            .map(|c| (c.generation & 1) as u8)
            .unwrap_or(0);
        Ok(Self {
            path_rules: take(bpf, "PATH_RULES")?,
            net_rules: take(bpf, "NET_RULES")?,
            taint_net: take(bpf, "TAINT_NET")?,
            config,
            inode_rules: take(bpf, "INODE_RULES")?,
            inode_count: take(bpf, "INODE_COUNT")?,
            digest_sizes: take(bpf, "DIGEST_SIZES")?,
            exec_wake: take(bpf, "EXEC_WAKE")?,
            open_epoch: take(bpf, "OPEN_EPOCH")?,
            generation,
        })
    }
}

/// A rule trie keyed by `[generation, …]` bytes (see `guard_common::rules`).
type RuleTrie<const N: usize> = LpmTrie<MapData, [u8; N], RuleRef>;

/// Inserts `entries` under `generation`.
pub(super) fn put_generation<const N: usize>(
    trie: &mut RuleTrie<N>,
    map: &'static str,
    entries: &[(u32, [u8; N], RuleRef)],
    generation: u8,
) -> Result<(), Error> {
    for (bits, data, value) in entries {
        let mut data = *data;
        data[0] = generation;
        trie.insert(&Key::new(*bits, data), *value, 0)
            .map_err(|source| Error::Map { map, source })?;
    }
    Ok(())
}

/// Removes every entry of `generation`.
pub(super) fn clear_generation<const N: usize>(
    trie: &mut RuleTrie<N>,
    map: &'static str,
    generation: u8,
) -> Result<(), Error> {
    let stale: Vec<Key<[u8; N]>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.data()[0] == generation)
        .collect();
    for k in stale {
        trie.remove(&k)
            .map_err(|source| Error::Map { map, source })?;
    }
    Ok(())
}

impl Probes {
    /// Installs a rule set with no gap: the new entries go in under the unused
    /// generation, one write to `CONFIG` switches to them, then the old ones go.
    /// On error the rules in force stay in force.
    /// The identity entries (`identity`) go in under the same generation.
    pub fn install(
        &mut self,
        rules: RuleTables<'_>,
        identity: &crate::identity::Identity,
    ) -> Result<(), Error> {
        let next = self.rules.generation ^ 1;
        self.rules_changed()?;
        self.clear_generation(next)?;
        put_generation(&mut self.rules.path_rules, "PATH_RULES", rules.paths, next)?;
        put_generation(&mut self.rules.net_rules, "NET_RULES", rules.nets, next)?;
        put_generation(
            &mut self.rules.taint_net,
            "TAINT_NET",
            rules.taint_nets,
            next,
        )?;
        let inodes = identity.entries(next);
        self.put_inodes(&inodes)?;
        self.set_inode_count(next, inodes.len())?;
        // Not by generation: a size held a moment too long, or too short, across a
        // change costs a hash, or the digest of one exec.
        self.set_digest_sizes(rules.digest_sizes)?;
        // Before the config that reads them: a name missing for a moment costs an
        // exec's record the drain beat, one extra a wake-up.
        replace_keys(&mut self.rules.exec_wake, "EXEC_WAKE", rules.exec_wake)?;
        let config = Config {
            generation: u32::from(next),
            ..rules.config
        };
        self.rules
            .config
            .set(0, config, 0)
            .map_err(|source| Error::Map {
                map: "CONFIG",
                source,
            })?;
        let old = self.rules.generation;
        self.rules.generation = next;
        self.clear_generation(old)?;
        self.rules_changed()
    }

    /// Moves the rules' epoch (`guard_common::epoch::RULES`), before and after each
    /// change of the rules: no open the kernel judged under the rules before (or
    /// during) a change is counted as a repeat after it. The first call turns the
    /// counting on.
    fn rules_changed(&mut self) -> Result<(), Error> {
        let at = guard_common::epoch::RULES;
        let map = "OPEN_EPOCH";
        let now = self
            .rules
            .open_epoch
            .get(&at, 0)
            .map_err(|source| Error::Map { map, source })?;
        self.rules
            .open_epoch
            .set(at, now.wrapping_add(1).max(1), 0)
            .map_err(|source| Error::Map { map, source })
    }

    fn set_digest_sizes(&mut self, sizes: &[u64]) -> Result<(), Error> {
        let max = guard_common::DIGEST_SIZES_MAX as usize;
        if sizes.len() > max {
            tracing::warn!(
                "{} file sizes named by digests: the first {max} are held at exec, the rest are not",
                sizes.len(),
            );
        }
        replace_keys(
            &mut self.rules.digest_sizes,
            "DIGEST_SIZES",
            &sizes[..sizes.len().min(max)],
        )
    }

    fn clear_generation(&mut self, generation: u8) -> Result<(), Error> {
        clear_generation(&mut self.rules.path_rules, "PATH_RULES", generation)?;
        clear_generation(&mut self.rules.net_rules, "NET_RULES", generation)?;
        clear_generation(&mut self.rules.taint_net, "TAINT_NET", generation)?;
        self.set_inode_count(generation, 0)?;
        self.retain_inodes(generation, &[])
    }

    fn put_inodes(&mut self, inodes: &[(InodeKey, RuleRef)]) -> Result<(), Error> {
        for (key, value) in inodes {
            self.rules
                .inode_rules
                .insert(key, value, 0)
                .map_err(|source| Error::Map {
                    map: "INODE_RULES",
                    source,
                })?;
        }
        Ok(())
    }

    fn set_inode_count(&mut self, generation: u8, n: usize) -> Result<(), Error> {
        self.rules
            .inode_count
            .set(u32::from(generation), n as u32, 0)
            .map_err(|source| Error::Map {
                map: "INODE_COUNT",
                source,
            })
    }

    /// Removes the identity entries of `generation` that are not in `keep`.
    fn retain_inodes(&mut self, generation: u8, keep: &[(InodeKey, RuleRef)]) -> Result<(), Error> {
        let keep: std::collections::HashSet<InodeKey> = keep.iter().map(|(k, _)| *k).collect();
        let stale: Vec<InodeKey> = self
            .rules
            .inode_rules
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.generation == generation && !keep.contains(k))
            .collect();
        for k in stale {
            self.rules
                .inode_rules
                .remove(&k)
                .map_err(|source| Error::Map {
                    map: "INODE_RULES",
                    source,
                })?;
        }
        Ok(())
    }

    /// Brings the identity entries in force up to date with `identity` (after it
    /// resolved its files again): new entries first, then the stale ones go.
    pub fn refresh_identity(&mut self, identity: &crate::identity::Identity) -> Result<(), Error> {
        let generation = self.rules.generation;
        let inodes = identity.entries(generation);
        self.rules_changed()?;
        self.put_inodes(&inodes)?;
        self.retain_inodes(generation, &inodes)?;
        self.set_inode_count(generation, inodes.len())?;
        self.rules_changed()
    }
}
