//! The control-plane request loops: create, read, list, update and delete functions, one request
//! at a time, timing each from sending the request to reading the whole response.

use std::fs::File;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::api_connection::ApiConnection;
use crate::deployment_package::{create_function_body, random_zip};
use crate::latency::Samples;

const FUNCTIONS_PATH: &str = "/2015-03-31/functions";
const LIST_PAGE_SIZE: usize = 50;
const RANDOM_SOURCE: &str = "/dev/urandom";

/// How many requests of each kind.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Functions created, then updated once and deleted once each.
    pub functions: usize,
    /// Unmeasured reads of each read operation before the measured ones.
    pub warmup: usize,
    /// Measured reads of each read operation.
    pub iterations: usize,
}

/// Samples per operation, in the order they ran.
pub async fn run(connection: &mut ApiConnection, workload: Workload) -> Result<Vec<Samples>> {
    ensure!(
        workload.functions > 0,
        "the workload needs at least one function"
    );
    let names: Vec<String> = (0..workload.functions)
        .map(|i| format!("kappa-bench-{i:05}"))
        .collect();
    let configuration_paths: Vec<String> = names
        .iter()
        .map(|name| format!("{FUNCTIONS_PATH}/{name}/configuration"))
        .collect();

    let create = create_functions(connection, &names).await?;
    let get = read_loop(
        connection,
        "GetFunctionConfiguration",
        &configuration_paths,
        workload,
    )
    .await?;
    let list_path = format!("{FUNCTIONS_PATH}?MaxItems={LIST_PAGE_SIZE}");
    let list = read_loop(
        connection,
        &format!(
            "ListFunctions (MaxItems={LIST_PAGE_SIZE}, {} functions)",
            names.len()
        ),
        std::slice::from_ref(&list_path),
        workload,
    )
    .await?;
    check_list_size(connection, &list_path, names.len().min(LIST_PAGE_SIZE)).await?;
    let update = update_functions(connection, &configuration_paths).await?;
    let delete = delete_functions(connection, &names).await?;
    check_list_size(connection, &list_path, 0).await?;
    Ok(vec![create, get, list, update, delete])
}

/// Times a sequential loop, leaving out the preparation done between requests.
struct Recorder {
    samples: Samples,
    started: Instant,
    preparing: Duration,
}

impl Recorder {
    fn new(operation: &str, capacity: usize) -> Self {
        Self {
            samples: Samples {
                operation: operation.to_owned(),
                latencies: Vec::with_capacity(capacity),
                loop_time: Duration::ZERO,
            },
            started: Instant::now(),
            preparing: Duration::ZERO,
        }
    }

    fn finish(mut self) -> Samples {
        self.samples.loop_time = self.started.elapsed().saturating_sub(self.preparing);
        self.samples
    }
}

async fn create_functions(connection: &mut ApiConnection, names: &[String]) -> Result<Samples> {
    let mut random =
        File::open(RANDOM_SOURCE).with_context(|| format!("opening {RANDOM_SOURCE}"))?;
    let mut recorder = Recorder::new("CreateFunction (1 MiB stored zip)", names.len());
    for name in names {
        let preparing = Instant::now();
        let zip = random_zip(&mut random)?;
        let zip_len = zip.len();
        let body = create_function_body(name, &zip)?;
        drop(zip);
        recorder.preparing += preparing.elapsed();

        let started = Instant::now();
        let response = connection
            .expect(
                Method::POST,
                FUNCTIONS_PATH,
                Some(body),
                StatusCode::CREATED,
            )
            .await?;
        recorder.samples.latencies.push(started.elapsed());

        let checking = Instant::now();
        let configuration = parse(&response, "CreateFunction")?;
        ensure!(
            configuration["FunctionName"] == name.as_str()
                && configuration["CodeSize"].as_u64() == u64::try_from(zip_len).ok(),
            "CreateFunction answered an unexpected configuration: {configuration}"
        );
        recorder.preparing += checking.elapsed();
    }
    Ok(recorder.finish())
}

/// `warmup` unmeasured then `iterations` measured GETs, cycling through `paths`.
async fn read_loop(
    connection: &mut ApiConnection,
    operation: &str,
    paths: &[String],
    workload: Workload,
) -> Result<Samples> {
    for path in paths.iter().cycle().take(workload.warmup) {
        let body = connection
            .expect(Method::GET, path, None, StatusCode::OK)
            .await?;
        parse(&body, operation)?;
    }
    let mut recorder = Recorder::new(operation, workload.iterations);
    for path in paths.iter().cycle().take(workload.iterations) {
        let started = Instant::now();
        connection
            .expect(Method::GET, path, None, StatusCode::OK)
            .await?;
        recorder.samples.latencies.push(started.elapsed());
    }
    Ok(recorder.finish())
}

async fn update_functions(connection: &mut ApiConnection, paths: &[String]) -> Result<Samples> {
    let body = Bytes::from_static(br#"{"Description":"x"}"#);
    let mut recorder = Recorder::new("UpdateFunctionConfiguration (Description)", paths.len());
    for path in paths {
        let started = Instant::now();
        let response = connection
            .expect(Method::PUT, path, Some(body.clone()), StatusCode::OK)
            .await?;
        recorder.samples.latencies.push(started.elapsed());

        let checking = Instant::now();
        let configuration = parse(&response, "UpdateFunctionConfiguration")?;
        ensure!(
            configuration["Description"] == "x",
            "UpdateFunctionConfiguration did not change the description: {configuration}"
        );
        recorder.preparing += checking.elapsed();
    }
    Ok(recorder.finish())
}

async fn delete_functions(connection: &mut ApiConnection, names: &[String]) -> Result<Samples> {
    let paths: Vec<String> = names
        .iter()
        .map(|name| format!("{FUNCTIONS_PATH}/{name}"))
        .collect();
    let mut recorder = Recorder::new("DeleteFunction", names.len());
    for path in &paths {
        let started = Instant::now();
        connection
            .expect(Method::DELETE, path, None, StatusCode::NO_CONTENT)
            .await?;
        recorder.samples.latencies.push(started.elapsed());
    }
    Ok(recorder.finish())
}

async fn check_list_size(
    connection: &mut ApiConnection,
    path: &str,
    expected: usize,
) -> Result<()> {
    let body = connection
        .expect(Method::GET, path, None, StatusCode::OK)
        .await?;
    let listed = parse(&body, "ListFunctions")?["Functions"]
        .as_array()
        .map(Vec::len);
    ensure!(
        listed == Some(expected),
        "ListFunctions returned {listed:?} functions instead of {expected}"
    );
    Ok(())
}

fn parse(body: &[u8], operation: &str) -> Result<Value> {
    serde_json::from_slice(body).with_context(|| format!("parsing the {operation} response"))
}
