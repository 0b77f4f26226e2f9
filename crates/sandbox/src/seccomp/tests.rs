use super::*;

fn policy() -> Policy {
    Policy::default_policy().expect("the embedded policy is valid")
}

fn rule<'a>(policy: &'a Policy, syscall: &str) -> &'a Rule {
    policy
        .rules
        .iter()
        .find(|r| r.syscall == syscall)
        .unwrap_or_else(|| panic!("the policy has a rule for {syscall}"))
}

/// What the compiled rule decides for these arguments, evaluated from the data the way the
/// kernel evaluates the BPF; the tests in `tests/seccomp.rs` check the real kernel.
fn refuses(rule: &Rule, args: [u64; 6]) -> bool {
    let holds = |c: &Condition| {
        let arg = if c.bits == 32 {
            args[usize::from(c.arg)] & u64::from(u32::MAX)
        } else {
            args[usize::from(c.arg)]
        };
        match c.op {
            Op::Eq => arg == c.value,
            Op::Ne => arg != c.value,
            Op::Lt => arg < c.value,
            Op::Le => arg <= c.value,
            Op::Gt => arg > c.value,
            Op::Ge => arg >= c.value,
            Op::MaskedEq => arg & c.mask.unwrap_or(0) == c.value,
        }
    };
    match &rule.when {
        None => true,
        Some(When::Any(conditions)) => conditions.iter().any(holds),
        Some(When::All(conditions)) => conditions.iter().all(holds),
    }
}

#[test]
fn default_policy_parses_and_validates() {
    let policy = policy();
    assert!(policy.rules.len() > 40, "{} rules", policy.rules.len());
}

#[test]
fn every_rule_has_a_reason() {
    let policy = policy();
    let missing: Vec<_> = policy
        .rules
        .iter()
        .filter(|r| r.reason.trim().len() < 20)
        .map(|r| r.syscall.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a real reason: {missing:?}"
    );
    assert!(!policy.unreviewed_syscalls.reason.trim().is_empty());
}

#[test]
fn no_syscall_is_listed_twice() {
    let policy = policy();
    let mut seen = HashSet::new();
    for rule in &policy.rules {
        assert!(seen.insert(&rule.syscall), "{} twice", rule.syscall);
    }
}

#[test]
fn compiles_for_x86_64_and_aarch64() {
    let policy = policy();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let programs = policy
            .compile(arch)
            .unwrap_or_else(|e| panic!("compiling for {arch:?}: {e:?}"));
        // EPERM rules, ENOSYS rules, the guard for unreviewed numbers.
        assert_eq!(programs.len(), 3, "{arch:?}");
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }
    SyscallFilter::for_host().expect("compiles for this host");
}

#[test]
fn refuses_everything_the_sandbox_issue_lists() {
    let policy = policy();
    let eperm = [
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "clone",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "settimeofday",
        "clock_settime",
        "adjtimex",
        "syslog",
        "quotactl",
        "open_by_handle_at",
        "name_to_handle_at",
        "iopl",
        "ioperm",
        "userfaultfd",
        "lookup_dcookie",
        "mount_setattr",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "personality",
        "vhangup",
        "nfsservctl",
    ];
    for syscall in eperm {
        assert_eq!(rule(&policy, syscall).errno, Errno::Eperm, "{syscall}");
    }
    assert_eq!(rule(&policy, "clone3").errno, Errno::Enosys);
    assert_eq!(policy.unreviewed_syscalls.errno, Errno::Enosys);
    // Unconditional, except the ones whose arguments decide.
    let conditional = ["clone", "personality", "mknod", "mknodat", "ioctl"];
    for rule in &policy.rules {
        assert_eq!(
            rule.when.is_some(),
            conditional.contains(&rule.syscall.as_str()),
            "{}",
            rule.syscall
        );
    }
}

#[test]
fn clone_is_refused_only_with_namespace_flags() {
    let policy = policy();
    let clone = rule(&policy, "clone");
    let sigchld = 17;
    // glibc's pthread_create, Go's newosproc, fork and vfork.
    let allowed = [
        0x003d_0f00,
        0x0005_0f00,
        0x0120_0000 | sigchld,
        0x4100 | sigchld,
    ];
    for flags in allowed {
        assert!(!refuses(clone, [flags, 0, 0, 0, 0, 0]), "{flags:#x}");
    }
    let namespaces = [
        0x0002_0000,
        0x0200_0000,
        0x0400_0000,
        0x0800_0000,
        0x1000_0000,
        0x2000_0000,
        0x4000_0000,
    ];
    for flag in namespaces {
        assert!(refuses(clone, [flag | sigchld, 0, 0, 0, 0, 0]), "{flag:#x}");
        assert!(
            refuses(clone, [flag | 0x003d_0f00, 0, 0, 0, 0, 0]),
            "{flag:#x}"
        );
    }
}

#[test]
fn personality_allows_only_default_personas() {
    let policy = policy();
    let personality = rule(&policy, "personality");
    for persona in [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff, u64::MAX] {
        assert!(
            !refuses(personality, [persona, 0, 0, 0, 0, 0]),
            "{persona:#x}"
        );
    }
    // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_BSD.
    for persona in [0x0004_0000, 0x0040_0000, 0x6] {
        assert!(
            refuses(personality, [persona, 0, 0, 0, 0, 0]),
            "{persona:#x}"
        );
    }
}

#[test]
fn mknod_refuses_only_device_nodes() {
    let policy = policy();
    let mknodat = rule(&policy, "mknodat");
    for mode in [0o020_600, 0o060_600] {
        assert!(refuses(mknodat, [0, 0, mode, 0, 0, 0]), "{mode:o}");
    }
    // FIFO, socket, regular file.
    for mode in [0o010_600, 0o140_600, 0o100_600] {
        assert!(!refuses(mknodat, [0, 0, mode, 0, 0, 0]), "{mode:o}");
    }
}

#[test]
fn guard_refuses_numbers_past_the_reviewed_table() {
    let policy = policy();
    assert!(
        policy.unreviewed_syscalls.from_nr > 462,
        "mseal (462) was reviewed"
    );
    let guard = unreviewed_guard(Arch::X86_64, &policy.unreviewed_syscalls);
    assert_eq!(guard[4].k, policy.unreviewed_syscalls.from_nr);
    assert_eq!(guard[5].k, nix::libc::SECCOMP_RET_ERRNO | 38);
}

fn parse_error(text: &str) -> String {
    match Policy::parse(text) {
        Ok(_) => panic!("accepted {text}"),
        Err(e) => e.to_string(),
    }
}

fn one_rule(rule: &str) -> String {
    format!(
        r#"{{"description": "", "default_action": "allow",
            "unreviewed_syscalls": {{"from_nr": 463, "errno": "ENOSYS", "reason": "new"}},
            "rules": [{rule}]}}"#
    )
}

#[test]
fn rejects_rules_without_reason() {
    let text = one_rule(r#"{"syscall": "mount", "errno": "EPERM", "reason": "  "}"#);
    assert_eq!(
        parse_error(&text),
        "invalid seccomp rule for mount: the rule has no reason"
    );
    let text = one_rule(r#"{"syscall": "mount", "errno": "EPERM"}"#);
    assert!(parse_error(&text).contains("parsing"));
}

#[test]
fn rejects_duplicates_typos_and_bad_conditions() {
    let twice = r#"{"syscall": "mount", "errno": "EPERM", "reason": "r"},
                   {"syscall": "mount", "errno": "EPERM", "reason": "r"}"#;
    assert_eq!(
        parse_error(&one_rule(twice)),
        "the seccomp policy lists mount more than once"
    );
    let typo = r#"{"syscall": "mount", "errno": "EPERM", "reasn": "r"}"#;
    assert!(parse_error(&one_rule(typo)).contains("parsing"));
    let errno = r#"{"syscall": "mount", "errno": "EIO", "reason": "r"}"#;
    assert!(parse_error(&one_rule(errno)).contains("parsing"));
    let cases = [
        (
            r#"{"arg": 6, "bits": 64, "op": "eq", "value": 1}"#,
            "past the sixth",
        ),
        (
            r#"{"arg": 0, "bits": 16, "op": "eq", "value": 1}"#,
            "32 or 64",
        ),
        (
            r#"{"arg": 0, "bits": 32, "op": "eq", "value": "0x100000000"}"#,
            "wider",
        ),
        (
            r#"{"arg": 0, "bits": 64, "op": "masked_eq", "value": 1}"#,
            "needs a mask",
        ),
        (
            r#"{"arg": 0, "bits": 64, "op": "masked_eq", "mask": "0x1", "value": "0x3"}"#,
            "never matches",
        ),
        (
            r#"{"arg": 0, "bits": 64, "op": "eq", "mask": 1, "value": 1}"#,
            "only masked_eq",
        ),
    ];
    for (condition, problem) in cases {
        let text = one_rule(&format!(
            r#"{{"syscall": "clone", "errno": "EPERM", "reason": "r",
                "when": {{"any": [{condition}]}}}}"#
        ));
        let error = parse_error(&text);
        assert!(error.contains(problem), "{condition}: {error}");
    }
}

#[test]
fn unknown_syscall_names_fail_to_compile() {
    let text = one_rule(r#"{"syscall": "no_such_call", "errno": "EPERM", "reason": "r"}"#);
    let policy = Policy::parse(&text).expect("valid shape");
    assert!(matches!(
        policy.compile(Arch::X86_64),
        Err(SeccompError::Compile { .. })
    ));
    // x86-only calls need `arches`.
    let text = one_rule(r#"{"syscall": "iopl", "errno": "EPERM", "reason": "r"}"#);
    let policy = Policy::parse(&text).expect("valid shape");
    assert!(policy.compile(Arch::X86_64).is_ok());
    assert!(policy.compile(Arch::Aarch64).is_err());
}

#[test]
fn rejects_guard_below_unified_numbering() {
    let text = r#"{"description": "", "default_action": "allow",
        "unreviewed_syscalls": {"from_nr": 300, "errno": "ENOSYS", "reason": "new"},
        "rules": [{"syscall": "mount", "errno": "EPERM", "reason": "r"}]}"#;
    assert!(parse_error(text).contains("below 424"));
}

#[test]
fn kernel_bytes_are_the_programs_instruction_by_instruction() {
    let filter = SyscallFilter::for_host().expect("the default policy compiles here");
    let bytes = filter.to_kernel_bytes();
    assert_eq!(bytes.len(), filter.programs.len());
    for (program, encoded) in filter.programs.iter().zip(&bytes) {
        assert_eq!(encoded.len(), program.len() * 8);
        for (instruction, chunk) in program.iter().zip(encoded.chunks_exact(8)) {
            assert_eq!(u16::from_ne_bytes([chunk[0], chunk[1]]), instruction.code);
            assert_eq!((chunk[2], chunk[3]), (instruction.jt, instruction.jf));
            assert_eq!(
                u32::from_ne_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
                instruction.k
            );
        }
    }
}
