//! The seccomp filter of an execution environment, kept as reviewed data.
//!
//! The policy is `seccomp/default.json`, embedded in the binary: a deny-list in which every rule
//! names one syscall, the errno it fails with, optional conditions on its arguments, and the
//! reason it is refused (Firecracker keeps its filters as JSON the same way). This module
//! validates the policy, compiles it with `seccompiler` for the host architecture (x86_64 or
//! aarch64), and installs it.
//!
//! A seccomp filter returns one action, so the policy compiles into one BPF program per errno,
//! plus a small hand-written guard that refuses syscall numbers newer than the reviewed table
//! (which also covers x86_64's x32 numbers). The kernel runs every program and the refusal wins.

use std::collections::{BTreeMap, HashSet};

use seccompiler::{BpfProgram, TargetArch, sock_filter};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use thiserror::Error;

/// The policy every execution environment runs under.
const DEFAULT_POLICY: &str = include_str!("../seccomp/default.json");

/// The highest syscall argument index seccomp can inspect (arguments 0 to 5).
const MAX_ARG: u8 = 5;

/// From this number on, syscall numbers are the same on every architecture (Linux 5.1's unified
/// numbering), so the policy's `unreviewed_syscalls.from_nr` must not be lower.
const FIRST_UNIFIED_NR: u32 = 424;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("parsing the seccomp policy")]
    Parse(#[source] serde_json::Error),
    #[error("invalid seccomp rule for {syscall}: {problem}")]
    InvalidRule {
        syscall: String,
        problem: &'static str,
    },
    #[error("the seccomp policy lists {0} more than once")]
    DuplicateSyscall(String),
    #[error("invalid seccomp policy: {0}")]
    InvalidPolicy(&'static str),
    #[error("no seccomp filter for architecture {0}")]
    UnsupportedArch(&'static str),
    #[error("compiling the seccomp policy for {arch}")]
    Compile {
        arch: &'static str,
        #[source]
        source: seccompiler::Error,
    },
    #[error("setting no_new_privs")]
    NoNewPrivs(#[source] nix::Error),
    #[error("installing a seccomp filter")]
    Install(#[source] seccompiler::Error),
}

/// The compiled filter for this host: BPF programs ready to install.
///
/// Compile it where allocating is fine and install it later, e.g. in a `pre_exec` hook:
/// [`SyscallFilter::install`] makes only the `prctl` and `seccomp` syscalls and allocates nothing.
#[derive(Debug, Clone)]
pub struct SyscallFilter {
    programs: Vec<BpfProgram>,
}

impl SyscallFilter {
    /// Compile the embedded default policy for the architecture this binary runs on.
    pub fn for_host() -> Result<Self, SeccompError> {
        Ok(Self {
            programs: Policy::default_policy()?.compile(host_arch()?)?,
        })
    }

    /// Set `PR_SET_NO_NEW_PRIVS` and attach the filter to the calling thread; threads and
    /// processes it creates afterwards, and programs it executes, inherit the filter. In a
    /// single-threaded process (the sandbox init) that is the whole process.
    pub fn install(&self) -> Result<(), SeccompError> {
        nix::sys::prctl::set_no_new_privs().map_err(SeccompError::NoNewPrivs)?;
        for program in &self.programs {
            seccompiler::apply_filter(program).map_err(SeccompError::Install)?;
        }
        Ok(())
    }

    /// The programs as the kernel takes them (`struct sock_filter` arrays in native byte
    /// order), in the order [`SyscallFilter::install`] attaches them: for a process that installs
    /// the same filter itself (a runtime forked from a zygote).
    pub fn to_kernel_bytes(&self) -> Vec<Vec<u8>> {
        self.programs
            .iter()
            .map(|program| {
                let mut bytes = Vec::with_capacity(program.len() * 8);
                for instruction in program {
                    bytes.extend_from_slice(&instruction.code.to_ne_bytes());
                    bytes.push(instruction.jt);
                    bytes.push(instruction.jf);
                    bytes.extend_from_slice(&instruction.k.to_ne_bytes());
                }
                bytes
            })
            .collect()
    }
}

/// Compile the default policy and install it on the current (single-threaded) process.
pub fn install_seccomp() -> Result<(), SeccompError> {
    SyscallFilter::for_host()?.install()
}

fn host_arch() -> Result<Arch, SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(Arch::X86_64),
        "aarch64" => Ok(Arch::Aarch64),
        other => Err(SeccompError::UnsupportedArch(other)),
    }
}

/// The policy file: see `seccomp/default.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    /// For reviewers only.
    #[allow(dead_code)]
    description: String,
    /// Always `allow`: this is a deny-list. Spelled out so a reader of the file knows.
    #[allow(dead_code)]
    default_action: DefaultAction,
    unreviewed_syscalls: UnreviewedSyscalls,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DefaultAction {
    Allow,
}

/// Syscall numbers from `from_nr` on are newer than the table the policy was reviewed against.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnreviewedSyscalls {
    from_nr: u32,
    errno: Errno,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    syscall: String,
    errno: Errno,
    /// The architectures the rule applies to; all supported ones when absent.
    #[serde(default)]
    arches: Option<Vec<Arch>>,
    /// When the syscall is refused; always when absent.
    #[serde(default)]
    when: Option<When>,
    reason: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Errno {
    #[serde(rename = "EPERM")]
    Eperm,
    #[serde(rename = "ENOSYS")]
    Enosys,
}

impl Errno {
    fn code(self) -> u32 {
        let code = match self {
            Errno::Eperm => nix::libc::EPERM,
            Errno::Enosys => nix::libc::ENOSYS,
        };
        code.unsigned_abs()
    }

    fn name(self) -> &'static str {
        match self {
            Errno::Eperm => "EPERM",
            Errno::Enosys => "ENOSYS",
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
}

impl Arch {
    fn target(self) -> TargetArch {
        match self {
            Arch::X86_64 => TargetArch::x86_64,
            Arch::Aarch64 => TargetArch::aarch64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// `AUDIT_ARCH_*` from linux/audit.h: the ELF machine, 64-bit, little-endian.
    fn audit_arch(self) -> u32 {
        let machine = match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        };
        machine | 0x8000_0000 | 0x4000_0000
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum When {
    /// Refused if any condition holds.
    Any(Vec<Condition>),
    /// Refused if every condition holds.
    All(Vec<Condition>),
}

impl When {
    fn conditions(&self) -> &[Condition] {
        match self {
            When::Any(conditions) | When::All(conditions) => conditions,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Condition {
    arg: u8,
    /// 32 compares the argument's low half only: right for `int` and `unsigned int` arguments,
    /// which the kernel truncates.
    bits: u8,
    op: Op,
    #[serde(default, deserialize_with = "optional_number")]
    mask: Option<u64>,
    #[serde(deserialize_with = "number")]
    value: u64,
    /// For reviewers only: what the value means.
    #[allow(dead_code)]
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `arg & mask == value`.
    MaskedEq,
}

/// A number written as JSON number, or as a string in decimal or `0x` hex (flags read better).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberText {
    Number(u64),
    Text(String),
}

fn parse_number<E: serde::de::Error>(raw: NumberText) -> Result<u64, E> {
    match raw {
        NumberText::Number(n) => Ok(n),
        NumberText::Text(text) => match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        }
        .map_err(|_| E::custom(format!("{text:?} is not a number"))),
    }
}

fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    parse_number(NumberText::deserialize(deserializer)?)
}

fn optional_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    number(deserializer).map(Some)
}

impl Policy {
    fn default_policy() -> Result<Self, SeccompError> {
        Self::parse(DEFAULT_POLICY)
    }

    fn parse(text: &str) -> Result<Self, SeccompError> {
        let policy: Policy = serde_json::from_str(text).map_err(SeccompError::Parse)?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), SeccompError> {
        if self.rules.is_empty() {
            return Err(SeccompError::InvalidPolicy("the policy has no rules"));
        }
        if self.unreviewed_syscalls.reason.trim().is_empty() {
            return Err(SeccompError::InvalidPolicy(
                "unreviewed_syscalls has no reason",
            ));
        }
        if self.unreviewed_syscalls.from_nr < FIRST_UNIFIED_NR {
            return Err(SeccompError::InvalidPolicy(
                "unreviewed_syscalls.from_nr is below 424, where numbers differ per architecture",
            ));
        }
        let mut seen = HashSet::new();
        for rule in &self.rules {
            rule.validate()?;
            if !seen.insert(rule.syscall.as_str()) {
                return Err(SeccompError::DuplicateSyscall(rule.syscall.clone()));
            }
        }
        Ok(())
    }

    /// One BPF program per errno, then the guard for unreviewed syscall numbers.
    fn compile(&self, arch: Arch) -> Result<Vec<BpfProgram>, SeccompError> {
        let compile_error = |source| SeccompError::Compile {
            arch: arch.name(),
            source,
        };
        let mut by_errno: BTreeMap<Errno, Vec<Value>> = BTreeMap::new();
        for rule in self.rules.iter().filter(|rule| rule.applies_to(arch)) {
            by_errno
                .entry(rule.errno)
                .or_default()
                .extend(rule.seccompiler_rules());
        }
        // seccompiler's JSON front end is the one place that maps syscall names to each
        // architecture's numbers, so the rules go through it.
        let filters: serde_json::Map<String, Value> = by_errno
            .iter()
            .map(|(errno, rules)| {
                let filter = json!({
                    "mismatch_action": "allow",
                    "match_action": { "errno": errno.code() },
                    "filter": rules,
                });
                (errno.name().to_owned(), filter)
            })
            .collect();
        let text = Value::Object(filters).to_string();
        let mut compiled = seccompiler::compile_from_json(text.as_bytes(), arch.target())
            .map_err(compile_error)?;
        let mut programs = by_errno
            .keys()
            .map(|errno| {
                compiled
                    .remove(errno.name())
                    .ok_or(SeccompError::InvalidPolicy("a compiled filter is missing"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        programs.push(unreviewed_guard(arch, &self.unreviewed_syscalls));
        Ok(programs)
    }
}

impl Rule {
    fn validate(&self) -> Result<(), SeccompError> {
        let invalid = |problem| SeccompError::InvalidRule {
            syscall: self.syscall.clone(),
            problem,
        };
        let name_ok = !self.syscall.is_empty()
            && self
                .syscall
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(invalid("the syscall name is not a lowercase identifier"));
        }
        if self.reason.trim().is_empty() {
            return Err(invalid("the rule has no reason"));
        }
        if let Some(arches) = &self.arches {
            let distinct: HashSet<_> = arches.iter().collect();
            if arches.is_empty() || distinct.len() != arches.len() {
                return Err(invalid("arches must list distinct architectures"));
            }
        }
        if let Some(when) = &self.when {
            if when.conditions().is_empty() {
                return Err(invalid("a condition list is empty"));
            }
            for condition in when.conditions() {
                condition.validate().map_err(invalid)?;
            }
        }
        Ok(())
    }

    fn applies_to(&self, arch: Arch) -> bool {
        self.arches
            .as_ref()
            .is_none_or(|arches| arches.contains(&arch))
    }

    /// The rule in seccompiler's JSON format. seccompiler ORs a syscall's rules and ANDs the
    /// conditions of each, so `any` becomes one rule per condition and `all` a single rule.
    fn seccompiler_rules(&self) -> Vec<Value> {
        let with_args =
            |conditions: Vec<Value>| json!({ "syscall": self.syscall, "args": conditions });
        match &self.when {
            None => vec![json!({ "syscall": self.syscall })],
            Some(When::Any(conditions)) => conditions
                .iter()
                .map(|c| with_args(vec![c.seccompiler_condition()]))
                .collect(),
            Some(When::All(conditions)) => vec![with_args(
                conditions
                    .iter()
                    .map(Condition::seccompiler_condition)
                    .collect(),
            )],
        }
    }
}

impl Condition {
    fn validate(&self) -> Result<(), &'static str> {
        if self.arg > MAX_ARG {
            return Err("a condition names an argument past the sixth");
        }
        let limit = match self.bits {
            32 => u64::from(u32::MAX),
            64 => u64::MAX,
            _ => return Err("a condition's bits must be 32 or 64"),
        };
        if self.value > limit || self.mask.is_some_and(|m| m > limit) {
            return Err("a condition's value or mask is wider than its bits");
        }
        match (self.op, self.mask) {
            (Op::MaskedEq, None) => Err("masked_eq needs a mask"),
            (Op::MaskedEq, Some(0)) => Err("masked_eq with a zero mask always matches"),
            (Op::MaskedEq, Some(mask)) if self.value & !mask != 0 => {
                Err("masked_eq value has bits outside its mask, so it never matches")
            }
            (Op::MaskedEq, Some(_)) => Ok(()),
            (_, Some(_)) => Err("only masked_eq takes a mask"),
            (_, None) => Ok(()),
        }
    }

    fn seccompiler_condition(&self) -> Value {
        let op = match self.op {
            Op::Eq => json!("eq"),
            Op::Ne => json!("ne"),
            Op::Lt => json!("lt"),
            Op::Le => json!("le"),
            Op::Gt => json!("gt"),
            Op::Ge => json!("ge"),
            Op::MaskedEq => json!({ "masked_eq": self.mask }),
        };
        let width = if self.bits == 32 { "dword" } else { "qword" };
        json!({ "index": self.arg, "type": width, "op": op, "val": self.value })
    }
}

// Classic BPF opcodes as seccomp runs them (linux/bpf_common.h) and `struct seccomp_data`
// offsets (linux/seccomp.h).
/// `BPF_LD | BPF_W | BPF_ABS`: load a 32-bit word of `seccomp_data`.
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const BPF_JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGE | BPF_K` (unsigned).
const BPF_JMP_JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`.
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR_OFFSET: u32 = 0;
const SECCOMP_DATA_ARCH_OFFSET: u32 = 4;

/// `nr >= from_nr` fails with the policy's errno. seccompiler's filters are keyed by syscall
/// number and cannot express a range, so this one is written out. x32 calls on x86_64 carry bit
/// 30 in their number and so land here too. Another ABI's calls are killed, as seccompiler's own
/// architecture check does.
fn unreviewed_guard(arch: Arch, unreviewed: &UnreviewedSyscalls) -> BpfProgram {
    let op = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    vec![
        op(BPF_LD_W_ABS, SECCOMP_DATA_ARCH_OFFSET),
        jump(BPF_JMP_JEQ_K, arch.audit_arch(), 1, 0),
        op(BPF_RET_K, nix::libc::SECCOMP_RET_KILL_PROCESS),
        op(BPF_LD_W_ABS, SECCOMP_DATA_NR_OFFSET),
        jump(BPF_JMP_JGE_K, unreviewed.from_nr, 0, 1),
        op(
            BPF_RET_K,
            nix::libc::SECCOMP_RET_ERRNO | unreviewed.errno.code(),
        ),
        op(BPF_RET_K, nix::libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests;
