//! How each runtime is started: the program, its arguments, and Lambda's environment variables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kappa_core::function::FunctionVersion;
use kappa_core::runtime;
use kappa_sandbox::{Bind, PrestartedRuntime};
use thiserror::Error;

/// Set only with `--isolation unsafe-none`: where the layers are, since nothing is at `/opt`.
pub const OPT_DIR_VARIABLE: &str = "_KAPPA_OPT_DIR";

/// Where the environment's files appear to the runtime.
#[derive(Debug, Clone)]
pub struct Layout {
    pub task_root: PathBuf,
    pub runtime_dir: PathBuf,
    pub opt_dir: PathBuf,
    /// Where a managed runtime's interpreter is shown when the host keeps it outside the system
    /// directories (Lambda's `/var/lang`); `None` without a private root.
    pub lang_dir: Option<PathBuf>,
}

impl Layout {
    /// Lambda's layout, used inside a mount namespace.
    pub fn lambda() -> Self {
        Self {
            task_root: PathBuf::from("/var/task"),
            runtime_dir: PathBuf::from("/var/runtime"),
            opt_dir: PathBuf::from("/opt"),
            lang_dir: Some(PathBuf::from("/var/lang")),
        }
    }
}

/// Host directories every isolated environment shows at their own path: an interpreter under
/// one of them needs no moving.
const SYSTEM_PREFIXES: [&str; 4] = ["/usr/", "/bin/", "/lib/", "/lib64/"];

/// Show a managed runtime's interpreter at `layout.lang_dir` when the host keeps it elsewhere
/// (pyenv under a home directory, say): rewrites `argv[0]` to `<lang_dir>/bin/<name>` and returns
/// the host prefix (the directory above the interpreter's `bin`) to bind there.
pub fn relocate_interpreter(argv: &mut [String], layout: &Layout) -> Option<PathBuf> {
    let lang_dir = layout.lang_dir.as_ref()?;
    if argv.len() < 2 {
        return None; // a custom runtime's bootstrap, not an interpreter
    }
    let interpreter = PathBuf::from(&argv[0]);
    if SYSTEM_PREFIXES
        .iter()
        .any(|prefix| interpreter.starts_with(prefix))
    {
        return None;
    }
    let bin = interpreter.parent()?;
    let prefix = bin.parent()?;
    // An interpreter whose `bin` is at the root has no prefix to move.
    prefix.parent()?;
    let name = interpreter.file_name()?;
    let bin_name = bin.file_name()?;
    argv[0] = lang_dir.join(bin_name).join(name).display().to_string();
    Some(prefix.to_owned())
}

#[derive(Debug, Error)]
pub enum LaunchError {
    /// A custom runtime without an executable `bootstrap` (Lambda's `Runtime.InvalidEntrypoint`).
    #[error("Couldn't find valid bootstrap(s): [{tried}]")]
    NoBootstrap { tried: String },
    #[error("no interpreter found for {runtime}: {detail}")]
    NoInterpreter { runtime: String, detail: String },
}

/// Interpreters for the managed runtimes, resolved once to their real paths.
#[derive(Debug, Default)]
pub struct Interpreters {
    python_override: Option<PathBuf>,
    node_override: Option<PathBuf>,
    resolved: Mutex<HashMap<String, PathBuf>>,
}

impl Interpreters {
    pub fn new(python: Option<PathBuf>, node: Option<PathBuf>) -> Self {
        Self {
            python_override: python,
            node_override: node,
            resolved: Mutex::default(),
        }
    }

    /// The interpreter for a managed runtime (`python3.12` → a Python 3.12 if the host has one).
    /// The interpreter for `runtime`. For Python, the bootstrap package in `host_runtime_dir` is
    /// compiled to bytecode for it once, since environments see that directory read-only.
    pub fn for_runtime(
        &self,
        runtime: &str,
        host_runtime_dir: &Path,
    ) -> Result<PathBuf, LaunchError> {
        if let Some(found) = self
            .resolved
            .lock()
            .ok()
            .and_then(|m| m.get(runtime).cloned())
        {
            return Ok(found);
        }
        let found = if runtime.starts_with("python") {
            match &self.python_override {
                Some(path) => Ok(path.clone()),
                None => resolve_python(runtime),
            }
        } else {
            match &self.node_override {
                Some(path) => Ok(path.clone()),
                None => which("node").ok_or_else(|| LaunchError::NoInterpreter {
                    runtime: runtime.to_owned(),
                    detail: "`node` is not on PATH; set KAPPA_NODE".to_owned(),
                }),
            }
        }?;
        if runtime.starts_with("python") {
            precompile(&found, host_runtime_dir);
        }
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(runtime.to_owned(), found.clone());
        }
        Ok(found)
    }
}

/// Write the bytecode of the Python bootstrap for `python`; a failure only costs start-up time.
fn precompile(python: &Path, dir: &Path) {
    let status = std::process::Command::new(python)
        .args(["-m", "compileall", "-q"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        tracing::warn!(python = %python.display(), "could not precompile the Python bootstrap");
    }
}

/// `python3.12` if the host has it: on PATH, or installed by pyenv (`$PYENV_ROOT/versions/3.12.*`,
/// asked for its real path so shims are bypassed); otherwise the host's `python3`.
fn resolve_python(runtime: &str) -> Result<PathBuf, LaunchError> {
    let exact = which(runtime).into_iter().chain(pyenv_candidates(runtime));
    for path in exact {
        if let Some(real) = real_python(&path) {
            return Ok(real);
        }
    }
    if let Some(real) = which("python3").and_then(|p| real_python(&p)) {
        tracing::warn!(runtime, interpreter = %real.display(), "no interpreter of this version on the host; using python3");
        return Ok(real);
    }
    Err(LaunchError::NoInterpreter {
        runtime: runtime.to_owned(),
        detail: "neither it nor python3 runs here; set KAPPA_PYTHON".to_owned(),
    })
}

/// Interpreters pyenv installed for `pythonX.Y`, newest patch release first.
fn pyenv_candidates(runtime: &str) -> Vec<PathBuf> {
    let Some(version) = runtime.strip_prefix("python") else {
        return Vec::new();
    };
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pyenv")));
    let Some(versions) = root.map(|r| r.join("versions")) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&versions) else {
        return Vec::new();
    };
    let prefix = format!("{version}.");
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let patch = name.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some((vec![patch], entry.path().join("bin").join(runtime)))
        })
        .filter(|(_, path)| is_executable(path))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, path)| path).collect()
}

/// The real executable behind `path` (which may be a shim), if it runs.
fn real_python(path: &Path) -> Option<PathBuf> {
    let output = std::process::Command::new(path)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let real = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !real.is_empty()).then(|| PathBuf::from(real))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program and arguments that start `version`'s runtime. `host_code` and `host_opt` are the
/// host paths of what the runtime sees at `layout.task_root` and `layout.opt_dir`.
pub fn command_line(
    version: &FunctionVersion,
    layout: &Layout,
    host_code: &Path,
    host_opt: &Path,
    host_runtime_dir: &Path,
    interpreters: &Interpreters,
) -> Result<Vec<String>, LaunchError> {
    let runtime = version
        .settings
        .runtime
        .as_deref()
        .unwrap_or("provided.al2023");
    if runtime::is_custom(runtime) {
        let candidates = [(host_code, &layout.task_root), (host_opt, &layout.opt_dir)];
        for (host_dir, inner_dir) in candidates {
            if is_executable(&host_dir.join("bootstrap")) {
                return Ok(vec![inner_dir.join("bootstrap").display().to_string()]);
            }
        }
        let tried = candidates
            .iter()
            .map(|(_, inner)| inner.join("bootstrap").display().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(LaunchError::NoBootstrap { tried });
    }
    let interpreter = interpreters
        .for_runtime(runtime, host_runtime_dir)?
        .display()
        .to_string();
    if runtime.starts_with("python") {
        let script = layout.runtime_dir.join("bootstrap.py");
        return Ok(vec![interpreter, script.display().to_string()]);
    }
    // The flags Lambda's Node launcher passes, sizing V8's heap to the function's memory.
    let memory = version.settings.memory_size;
    Ok(vec![
        interpreter,
        "--expose-gc".to_owned(),
        "--max-http-header-size=81920".to_owned(),
        format!("--max-semi-space-size={}", (memory / 10 / 2).max(1)),
        format!("--max-old-space-size={}", memory - memory / 10),
        layout
            .runtime_dir
            .join("bootstrap.mjs")
            .display()
            .to_string(),
    ])
}

/// Lambda's environment variables for one environment, with the function's own on top.
pub fn environment(
    version: &FunctionVersion,
    layout: &Layout,
    runtime_api: &str,
    region: &str,
    log_stream: &str,
    interpreter_dir: Option<&Path>,
) -> Vec<(String, String)> {
    let settings = &version.settings;
    let runtime = settings.runtime.as_deref().unwrap_or("provided.al2023");
    let task_root = layout.task_root.display().to_string();
    let mut vars: Vec<(String, String)> = vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), runtime_api.into()),
        ("LAMBDA_TASK_ROOT".into(), task_root),
        (
            "LAMBDA_RUNTIME_DIR".into(),
            layout.runtime_dir.display().to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), version.name.clone()),
        (
            "AWS_LAMBDA_FUNCTION_VERSION".into(),
            version.version.clone(),
        ),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            settings.memory_size.to_string(),
        ),
        ("AWS_LAMBDA_LOG_GROUP_NAME".into(), version.log_group()),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), log_stream.into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("AWS_REGION".into(), region.into()),
        ("AWS_DEFAULT_REGION".into(), region.into()),
    ];
    vars.extend(start_environment(layout, interpreter_dir));
    if let Some(handler) = &settings.handler {
        vars.push(("_HANDLER".into(), handler.clone()));
    }
    if !runtime::is_custom(runtime) {
        vars.push(("AWS_EXECUTION_ENV".into(), format!("AWS_Lambda_{runtime}")));
    }
    if settings.logging.log_format == "JSON" {
        vars.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
        if let Some(level) = &settings.logging.application_log_level {
            vars.push(("AWS_LAMBDA_LOG_LEVEL".into(), level.clone()));
        }
    }
    for (key, value) in settings.environment.iter().flatten() {
        vars.retain(|(k, _)| k != key);
        vars.push((key.clone(), value.clone()));
    }
    vars
}

/// The variables every environment of a runtime gets whatever its function, which include
/// those the dynamic loader and interpreters read as the process starts. `interpreter_dir` (a
/// managed runtime's `bin`) goes first on `PATH`.
pub fn start_environment(layout: &Layout, interpreter_dir: Option<&Path>) -> Vec<(String, String)> {
    let mut path = String::new();
    if let Some(dir) = interpreter_dir {
        path.push_str(&dir.display().to_string());
        path.push(':');
    }
    let opt_dir = layout.opt_dir.display().to_string();
    path.push_str("/usr/local/bin:/usr/bin/:/bin:");
    path.push_str(&opt_dir);
    path.push_str("/bin");
    vec![
        ("TZ".into(), ":UTC".into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        ("PATH".into(), path),
        (
            "LD_LIBRARY_PATH".into(),
            format!(
                "{lang}/lib64:/usr/lib64:{runtime}:{runtime}/lib:{task_root}:{task_root}/lib:{opt_dir}/lib",
                runtime = layout.runtime_dir.display(),
                task_root = layout.task_root.display(),
                lang = layout
                    .lang_dir
                    .as_ref()
                    .map(|lang| format!("{}/lib:", lang.display()))
                    .unwrap_or_default()
            ),
        ),
    ]
}

/// The runtime's own directories, shown read-only whatever its function: its bootstrap
/// (`host_runtime_dir`) at `layout.runtime_dir` and, if the interpreter was relocated, the host
/// prefix `lang_source` at `layout.lang_dir`.
pub fn runtime_binds(
    layout: &Layout,
    host_runtime_dir: &Path,
    lang_source: Option<&Path>,
) -> Vec<Bind> {
    let mut binds = vec![Bind {
        source: host_runtime_dir.to_owned(),
        target: layout.runtime_dir.clone(),
        writable: false,
    }];
    if let (Some(source), Some(target)) = (lang_source, layout.lang_dir.clone()) {
        binds.push(Bind {
            source: source.to_owned(),
            target,
            writable: false,
        });
    }
    binds
}

/// How `version`'s environments, whose runtime starts with `argv`, can have their runtime
/// started before their function is known. Kappa's Python and Node.js runtimes wait for their
/// function when started so (see `runtimes/*/README.md`); custom runtimes cannot, and neither
/// can a function that sets a variable its runtime reads as the process starts.
pub fn prestart(
    version: &FunctionVersion,
    argv: &[String],
    layout: &Layout,
    host_runtime_dir: &Path,
    lang_source: Option<&Path>,
    open_files_limit: u64,
) -> Option<PrestartedRuntime> {
    let runtime = version.settings.runtime.as_deref()?;
    let family = PrestartFamily::of(runtime)?;
    let reads_at_start = version
        .settings
        .environment
        .iter()
        .flatten()
        .any(|(name, _)| family.reads_at_start(name));
    if reads_at_start || argv.len() < 2 {
        return None;
    }
    let interpreter_dir = Path::new(argv.first()?).parent();
    Some(PrestartedRuntime {
        binds: runtime_binds(layout, host_runtime_dir, lang_source),
        argv: argv.to_vec(),
        env: start_environment(layout, interpreter_dir),
        open_files_limit,
        // CPython forks cleanly; node's V8 runs threads that a fork would not carry over.
        forkable: family == PrestartFamily::Python,
    })
}

/// The managed runtimes Kappa can start ahead of their function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrestartFamily {
    Python,
    Node,
}

impl PrestartFamily {
    fn of(runtime: &str) -> Option<Self> {
        if runtime.starts_with("python") {
            Some(Self::Python)
        } else if runtime.starts_with("nodejs") {
            Some(Self::Node)
        } else {
            None
        }
    }

    /// Whether the process reads `name` as it starts (the dynamic loader, the C library, the
    /// interpreter), too early for a runtime started before its function. The runtimes check
    /// the same lists (`runtimes/python/kappa_python_runtime/prestart.py`,
    /// `runtimes/nodejs/prestart.mjs`). Python applies a changed `TZ` itself (`time.tzset`).
    fn reads_at_start(self, name: &str) -> bool {
        const PREFIXES: [&str; 3] = ["LD_", "LC_", "MALLOC_"];
        const NAMES: [&str; 3] = ["LANG", "HOME", "GLIBC_TUNABLES"];
        let (prefixes, names): (&[&str], &[&str]) = match self {
            Self::Python => (&["PYTHON"], &[]),
            Self::Node => (&["NODE_", "UV_", "OPENSSL_", "SSL_CERT_"], &["TZ"]),
        };
        PREFIXES
            .iter()
            .chain(prefixes)
            .any(|prefix| name.starts_with(prefix))
            || NAMES.iter().chain(names).any(|known| *known == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `python3.12` `$LATEST` with default settings, for tests of what environments get.
    pub(crate) fn sample_version() -> FunctionVersion {
        serde_json::from_value(serde_json::json!({
            "name": "f", "version": "$LATEST", "revision_id": "r", "last_modified": "t",
            "code": {"sha256_hex": "", "sha256_base64": "", "size": 0, "unzipped_size": 0},
            "settings": {"runtime": "python3.12", "handler": "a.b", "role": "r", "description": "",
                "timeout": 3, "memory_size": 128, "ephemeral_storage": 512, "environment": null,
                "architectures": ["x86_64"], "tracing_mode": "PassThrough", "dead_letter_target": null,
                "kms_key_arn": null, "snap_start_apply_on": "None",
                "logging": {"log_format": "Text", "log_group": null, "application_log_level": null,
                    "system_log_level": null}}
        }))
        .expect("a valid version")
    }

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_interpreter_outside_the_system_directories_moves_to_var_lang() {
        let mut line = argv(&[
            "/root/.pyenv/versions/3.12.1/bin/python3.12",
            "/var/runtime/bootstrap.py",
        ]);
        let prefix = relocate_interpreter(&mut line, &Layout::lambda());
        assert_eq!(prefix, Some(PathBuf::from("/root/.pyenv/versions/3.12.1")));
        assert_eq!(line[0], "/var/lang/bin/python3.12");
        assert_eq!(line[1], "/var/runtime/bootstrap.py");
    }

    #[test]
    fn system_interpreters_and_bootstraps_stay_where_they_are() {
        for original in [
            argv(&["/usr/bin/node", "/var/runtime/bootstrap.mjs"]),
            argv(&["/usr/local/bin/python3.12", "x"]),
            argv(&["/bin/python3", "x"]),
            argv(&["/var/task/bootstrap"]),
        ] {
            let mut line = original.clone();
            assert_eq!(relocate_interpreter(&mut line, &Layout::lambda()), None);
            assert_eq!(line, original);
        }
    }

    #[test]
    fn nothing_moves_without_a_private_root() {
        let layout = Layout {
            lang_dir: None,
            ..Layout::lambda()
        };
        let mut line = argv(&["/root/.pyenv/versions/3.12.1/bin/python3.12", "x"]);
        assert_eq!(relocate_interpreter(&mut line, &layout), None);
    }

    #[test]
    fn lambda_layout_puts_var_lang_lib_first_on_the_library_path() {
        let version = sample_version();
        let vars = environment(
            &version,
            &Layout::lambda(),
            "127.0.0.1:9001",
            "us-east-1",
            "s",
            None,
        );
        let path = vars
            .iter()
            .find(|(k, _)| k == "LD_LIBRARY_PATH")
            .map(|(_, v)| v.clone());
        assert_eq!(
            path.as_deref(),
            Some(
                "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
            )
        );
    }

    fn with_runtime_and_vars(runtime: &str, vars: &[(&str, &str)]) -> FunctionVersion {
        let mut version = sample_version();
        version.settings.runtime = Some(runtime.to_owned());
        if !vars.is_empty() {
            version.settings.environment = Some(
                vars.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            );
        }
        version
    }

    fn prestart_of(version: &FunctionVersion, line: &[&str]) -> Option<PrestartedRuntime> {
        prestart(
            version,
            &argv(line),
            &Layout::lambda(),
            Path::new("/data/runtime/python"),
            Some(Path::new("/root/.pyenv/versions/3.12.1")),
            1024,
        )
    }

    #[test]
    fn a_python_runtime_is_prestarted_with_its_directories_and_the_start_variables() {
        let version = with_runtime_and_vars("python3.12", &[("MY_VAR", "x"), ("TZ", ":UTC")]);
        let line = ["/var/lang/bin/python3.12", "/var/runtime/bootstrap.py"];
        let runtime = prestart_of(&version, &line).expect("python is prestarted");
        assert_eq!(runtime.argv, argv(&line));
        let targets: Vec<_> = runtime.binds.iter().map(|b| b.target.clone()).collect();
        assert_eq!(
            targets,
            [PathBuf::from("/var/runtime"), PathBuf::from("/var/lang")]
        );
        assert!(runtime.binds.iter().all(|b| !b.writable));
        let names: Vec<_> = runtime.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["TZ", "LANG", "PATH", "LD_LIBRARY_PATH"]);
        assert!(runtime.env[2].1.starts_with("/var/lang/bin:"));
        // What the function gets for those names is what the prestarted runtime started with.
        let function_env = environment(
            &version,
            &Layout::lambda(),
            "a",
            "r",
            "s",
            Some(Path::new("/var/lang/bin")),
        );
        for (name, value) in &runtime.env {
            assert!(
                function_env.contains(&(name.clone(), value.clone())),
                "{name}"
            );
        }
    }

    #[test]
    fn nothing_is_prestarted_for_custom_runtimes_or_variables_read_at_start() {
        let python = ["/usr/bin/python3", "/var/runtime/bootstrap.py"];
        let node = ["/usr/bin/node", "--expose-gc", "/var/runtime/bootstrap.mjs"];
        for (runtime, vars, line) in [
            ("provided.al2023", vec![], &["/var/task/bootstrap"][..]),
            (
                "python3.12",
                vec![("PYTHONPATH", "/var/task/lib")],
                &python[..],
            ),
            (
                "python3.12",
                vec![("LD_PRELOAD", "/var/task/x.so")],
                &python[..],
            ),
            ("python3.12", vec![("LANG", "C")], &python[..]),
            ("nodejs20.x", vec![("NODE_OPTIONS", "--x")], &node[..]),
            ("nodejs20.x", vec![("TZ", "Europe/Paris")], &node[..]),
            ("nodejs20.x", vec![("UV_THREADPOOL_SIZE", "8")], &node[..]),
        ] {
            let version = with_runtime_and_vars(runtime, &vars);
            assert_eq!(prestart_of(&version, line), None, "{runtime} {vars:?}");
        }
        // Just under: a Python function may set TZ (the runtime applies it), a Node one
        // anything not read at start.
        let python_tz = with_runtime_and_vars("python3.12", &[("TZ", "Europe/Paris")]);
        assert!(prestart_of(&python_tz, &python).is_some());
        let node_plain = with_runtime_and_vars("nodejs20.x", &[("NODEJS", "x"), ("MY", "y")]);
        assert!(prestart_of(&node_plain, &node).is_some());
    }
}
