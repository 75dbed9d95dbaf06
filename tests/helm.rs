//! The deployment artifacts, checked with real tools: the Helm chart (`helm/verdict`) linted and
//! rendered by a real `helm`, every rendered object validated by `kubernetes-validate --strict`
//! against the Kubernetes schemas (the ServiceMonitor, a CRD it has no schema for, against
//! `tests/schemas/servicemonitor.schema.json`), assertions on the rendered objects themselves,
//! every rendered config file parsed by the daemon's own `Config`, and the real daemon started on
//! the rendered config and policy ConfigMaps laid out as kubelet mounts them, hot-reloading a new
//! rendering swapped in through `..data`. Plus the chart's copy of the clinic policies, the
//! values schema and README against values.yaml, and the Dockerfile's invariants.
//!
//! Tools: `helm` from `VERDICT_HELM` or PATH, `kubernetes-validate` from
//! `VERDICT_KUBERNETES_VALIDATE` or PATH (`.ci/run` installs both). A test that needs a missing
//! tool says so and passes, unless `CI` is set: then it fails.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use verdict::config::Config;

/// The Kubernetes version the renderings are validated against (the helm binary comes from the
/// kubectl v1.33 layer), besides the chart's minimum (Chart.yaml `kubeVersion`).
const KUBE: &str = "1.33";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("helm/verdict")
}

/// A tool from `env` (a path) or PATH.
fn tool(env: &str, name: &'static str) -> Option<PathBuf> {
    match std::env::var_os(env).filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        }),
    }
}

fn helm() -> PathBuf {
    tool("VERDICT_HELM", "helm").expect("a trial that needs helm")
}

fn kubernetes_validate() -> PathBuf {
    tool("VERDICT_KUBERNETES_VALIDATE", "kubernetes-validate")
        .expect("a trial that needs kubernetes-validate")
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let found = |env, name, what| common::Tool {
        what,
        found: tool(env, name).is_some(),
    };
    let helm = found(
        "VERDICT_HELM",
        "helm",
        "helm (set VERDICT_HELM or put it on PATH)",
    );
    let validate = found(
        "VERDICT_KUBERNETES_VALIDATE",
        "kubernetes-validate",
        "kubernetes-validate (set VERDICT_KUBERNETES_VALIDATE or put it on PATH)",
    );
    let trial = |name: &str, needs: &[common::Tool], test: fn()| {
        common::trial(&format!("helm::{name}"), needs, test)
    };
    vec![
        trial(
            "the_chart_lints_strictly_with_every_values_file",
            &[helm],
            the_chart_lints_strictly_with_every_values_file,
        ),
        trial(
            "every_rendering_passes_kubernetes_validate_strict_at_the_minimum_and_current_versions",
            &[helm, validate],
            every_rendering_passes_kubernetes_validate_strict_at_the_minimum_and_current_versions,
        ),
        trial(
            "every_rendering_is_hardened_and_wired_together",
            &[helm],
            every_rendering_is_hardened_and_wired_together,
        ),
        trial(
            "each_feature_renders_what_it_promises",
            &[helm],
            each_feature_renders_what_it_promises,
        ),
        trial(
            "every_rendered_config_is_a_valid_daemon_config_with_every_setting_spelled_out",
            &[helm],
            every_rendered_config_is_a_valid_daemon_config_with_every_setting_spelled_out,
        ),
        trial(
            "the_checksum_rolls_pods_on_settings_changes_and_not_on_policy_changes",
            &[helm],
            the_checksum_rolls_pods_on_settings_changes_and_not_on_policy_changes,
        ),
        trial(
            "settings_that_do_not_fit_fail_at_install_with_a_message_naming_them",
            &[helm],
            settings_that_do_not_fit_fail_at_install_with_a_message_naming_them,
        ),
        trial(
            "the_chart_ships_the_bundled_clinic_policies_byte_for_byte",
            &[],
            the_chart_ships_the_bundled_clinic_policies_byte_for_byte,
        ),
        trial(
            "the_default_rendering_carries_the_shipped_policies",
            &[helm],
            the_default_rendering_carries_the_shipped_policies,
        ),
        trial(
            "the_values_schema_types_every_value_and_the_chart_readme_documents_each",
            &[],
            the_values_schema_types_every_value_and_the_chart_readme_documents_each,
        ),
        trial(
            "the_dockerfile_builds_locked_and_runs_distroless_nonroot_on_the_charts_ports",
            &[],
            the_dockerfile_builds_locked_and_runs_distroless_nonroot_on_the_charts_ports,
        ),
        trial(
            "the_rendered_policy_configmap_hot_reloads_in_the_daemon_run_on_the_rendered_config",
            &[helm],
            the_rendered_policy_configmap_hot_reloads_in_the_daemon_run_on_the_rendered_config,
        ),
    ]
}

/// `helm template verdict helm/verdict --namespace verdict --kube-version KUBE ARGS...`.
fn template(helm: &Path, kube: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm)
        .args(["template", "verdict"])
        .arg(chart())
        .args([
            "--namespace",
            "verdict",
            "--kube-version",
            &format!("{kube}.0"),
        ])
        .args(args)
        .output()
        .expect("helm runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every values file of `helm/verdict/ci` (each switches an optional feature on), and the
/// defaults: (name, helm arguments).
fn scenarios() -> Vec<(String, Vec<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    let mut all = vec![("default".to_string(), Vec::new())];
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy();
        let name = name.trim_end_matches("-values.yaml").to_string();
        all.push((name, vec!["-f".into(), file.to_string_lossy().into_owned()]));
    }
    all
}

/// The objects of one rendering.
struct Rendering {
    name: String,
    text: String,
    objects: Vec<Json>,
}

impl Rendering {
    fn parse(name: &str, text: String) -> Rendering {
        use serde::Deserialize as _;
        let objects = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| Json::deserialize(doc).expect("helm renders valid YAML"))
            .filter(|doc| !doc.is_null())
            .collect();
        Rendering {
            name: name.to_string(),
            text,
            objects,
        }
    }

    fn all(&self, kind: &str) -> Vec<&Json> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The one object of `kind` (whose name ends with `suffix`).
    fn one(&self, kind: &str, suffix: &str) -> &Json {
        let found: Vec<&Json> = self
            .all(kind)
            .into_iter()
            .filter(|o| o["metadata"]["name"].as_str().unwrap().ends_with(suffix))
            .collect();
        assert_eq!(found.len(), 1, "{}: {kind} *{suffix}", self.name);
        found[0]
    }

    fn maybe(&self, kind: &str, suffix: &str) -> Option<&Json> {
        self.all(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"].as_str().unwrap().ends_with(suffix))
    }

    /// The daemon's config file, as rendered into its ConfigMap.
    fn config_text(&self) -> String {
        self.one("ConfigMap", "-config")["data"]["verdict.yaml"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn config(&self) -> Config {
        Config::from_yaml(Path::new("verdict.yaml"), &self.config_text())
            .unwrap_or_else(|e| panic!("{}: the rendered config is refused: {e}", self.name))
    }

    /// The policy ConfigMap's files, when the chart renders one.
    fn policy_files(&self) -> Option<BTreeMap<String, String>> {
        self.maybe("ConfigMap", "-policies").map(|cm| {
            cm["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
    }

    fn pod(&self) -> &Json {
        &self.one("Deployment", "")["spec"]["template"]["spec"]
    }

    fn daemon(&self) -> &Json {
        self.pod()["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "verdict")
            .expect("the verdict container")
    }

    fn checksum(&self) -> String {
        self.one("Deployment", "")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Every scenario rendered at [`KUBE`], once for all tests.
fn rendered() -> &'static [Rendering] {
    static RENDERED: OnceLock<Vec<Rendering>> = OnceLock::new();
    let helm = helm();
    RENDERED.get_or_init(|| {
        scenarios()
            .iter()
            .map(|(name, args)| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let text = template(&helm, KUBE, &args)
                    .unwrap_or_else(|e| panic!("{name} does not render: {e}"));
                Rendering::parse(name, text)
            })
            .collect()
    })
}

fn the_chart_lints_strictly_with_every_values_file() {
    let helm = helm();
    for (name, args) in scenarios() {
        let out = Command::new(&helm)
            .args(["lint", "--strict"])
            .arg(chart())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm lint --strict ({name}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The interpreter of a Python console script (its shebang), which has the script's packages.
fn python_of(script: &Path) -> PathBuf {
    let text = std::fs::read_to_string(script).unwrap_or_default();
    match text.lines().next().and_then(|l| l.strip_prefix("#!")) {
        Some(line) if !line.contains("/env ") => PathBuf::from(line.trim()),
        _ => PathBuf::from("python3"),
    }
}

/// Validates `instance` against the JSON schema at `schema` with Python's jsonschema (installed
/// with kubernetes-validate). `Err` carries the validation error.
fn json_schema_check(python: &Path, schema: &Path, instance: &Json) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instance.json");
    std::fs::write(&file, instance.to_string()).unwrap();
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.Draft7Validator.check_schema(schema)\n\
             jsonschema.validate(json.load(open(sys.argv[2])), schema, cls=jsonschema.Draft7Validator)",
        ])
        .arg(schema)
        .arg(&file)
        .output()
        .expect("python runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs kubernetes-validate on the renderings (one file each) for Kubernetes `kube`, and checks
/// that every object passed, and that the only kind it had no schema for is the ServiceMonitor,
/// where the chart renders one.
fn validate_renderings(validator: &Path, kube: &str, renderings: &[(String, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut expected_passes = 0;
    for (name, text) in renderings {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
        let rendering = Rendering::parse(name, text.clone());
        expected_passes += rendering.objects.len() - rendering.all("ServiceMonitor").len();
    }
    let out = Command::new(validator)
        .args(["--strict", "-k", kube])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate -k {kube}:\n{report}"
    );
    let mut passes = 0;
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("INFO ") && line.contains(" passed for resource ") {
            passes += 1;
        } else if line.starts_with("WARN ")
            && line.contains("Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1")
        {
            let file = line.split_whitespace().nth(1).unwrap();
            let name = Path::new(file).file_stem().unwrap().to_string_lossy();
            let (_, text) = renderings.iter().find(|(n, _)| *n == name).unwrap();
            assert!(text.contains("kind: ServiceMonitor"), "{line}");
        } else {
            panic!("kubernetes-validate -k {kube} said something unexpected: {line}\n{report}");
        }
    }
    assert_eq!(
        passes, expected_passes,
        "every object but ServiceMonitors passes, none is skipped:\n{report}"
    );
}

fn every_rendering_passes_kubernetes_validate_strict_at_the_minimum_and_current_versions() {
    let (helm, validator, all) = (helm(), kubernetes_validate(), rendered());
    let current: Vec<(String, String)> = all
        .iter()
        .map(|r| (r.name.clone(), r.text.clone()))
        .collect();
    validate_renderings(&validator, KUBE, &current);

    // The chart's minimum Kubernetes version, from Chart.yaml (">=1.27.0-0").
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    let minimum = chart_yaml
        .lines()
        .find_map(|l| l.strip_prefix("kubeVersion: "))
        .expect("Chart.yaml has a kubeVersion")
        .trim_matches(|c| c == '"' || c == '>' || c == '=');
    let minimum = minimum.split('.').take(2).collect::<Vec<_>>().join(".");
    let mut oldest = Vec::new();
    for (name, args) in scenarios() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match template(&helm, &minimum, &args) {
            Ok(text) => oldest.push((name, text)),
            // Native sidecars need 1.29: the chart says so instead of rendering something the
            // cluster would reject.
            Err(e) => assert!(
                name == "git-sync"
                    && e.contains("gitSync.nativeSidecar needs Kubernetes >= 1.29")
                    && e.contains("set gitSync.nativeSidecar=false"),
                "{name} does not render for Kubernetes {minimum}: {e}"
            ),
        }
    }
    assert_eq!(oldest.len(), current.len() - 1);
    validate_renderings(&validator, &minimum, &oldest);

    // The ServiceMonitor: a strict subset of the prometheus-operator CRD's schema.
    let python = python_of(&validator);
    let schema = root().join("tests/schemas/servicemonitor.schema.json");
    let monitors: Vec<&Json> = all.iter().flat_map(|r| r.all("ServiceMonitor")).collect();
    assert!(!monitors.is_empty());
    for monitor in &monitors {
        json_schema_check(&python, &schema, monitor)
            .unwrap_or_else(|e| panic!("the ServiceMonitor does not validate: {e}\n{monitor:#}"));
    }
    let mut misspelled = monitors[0].clone();
    misspelled["spec"]["endpoints"][0]["intervall"] = json!("30s");
    let error = json_schema_check(&python, &schema, &misspelled).unwrap_err();
    assert!(error.contains("intervall"), "{error}");
}

fn port_of(address: std::net::SocketAddr) -> u64 {
    u64::from(address.port())
}

/// The named container ports of a container: name -> port.
fn container_ports(container: &Json) -> BTreeMap<String, u64> {
    container["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_string(),
                        p["containerPort"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Where each volume is mounted in the daemon: mount path -> volume.
fn mounts<'a>(pod: &'a Json, container: &Json) -> BTreeMap<String, &'a Json> {
    let volumes = pod["volumes"].as_array().unwrap();
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let volume = volumes
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("volume {} is mounted but not defined", m["name"]));
            (m["mountPath"].as_str().unwrap().to_string(), volume)
        })
        .collect()
}

/// The volume mounted at the longest mount path that holds `path`.
fn volume_holding<'a>(mounts: &BTreeMap<String, &'a Json>, path: &Path) -> Option<&'a Json> {
    mounts
        .iter()
        .filter(|(at, _)| path.starts_with(at.as_str()))
        .max_by_key(|(at, _)| at.len())
        .map(|(_, v)| *v)
}

fn subset(small: &Json, big: &Json) -> bool {
    small
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| big.get(k) == Some(v))
}

fn every_rendering_is_hardened_and_wired_together() {
    let all = rendered();
    for r in all {
        let name = &r.name;
        let deployment = r.one("Deployment", "");
        let pod = r.pod();
        let config = r.config();

        // Hardening: the pod and every container, the init containers included.
        let pod_security = &pod["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true, "{name}");
        assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        let containers = pod["containers"].as_array().unwrap();
        let inits = pod["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in containers.iter().chain(&inits) {
            let s = &c["securityContext"];
            let what = format!("{name}: container {}", c["name"]);
            assert_eq!(s["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(s["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(s["capabilities"]["drop"], json!(["ALL"]), "{what}");
            assert_eq!(s["runAsNonRoot"], true, "{what}");
        }
        let daemon = r.daemon();
        assert_eq!(daemon["securityContext"]["runAsUser"], 65532, "{name}");
        assert!(daemon["resources"]["requests"].is_object(), "{name}");

        // The daemon runs the rendered config file, mounted from the config ConfigMap.
        let mounts = mounts(pod, daemon);
        let args = daemon["args"].as_array().unwrap();
        assert_eq!(args[..2], [json!("serve"), json!("--config")], "{name}");
        let config_file = Path::new(args[2].as_str().unwrap());
        let config_volume = volume_holding(&mounts, config_file).expect("the config is mounted");
        assert_eq!(
            config_volume["configMap"]["name"],
            r.one("ConfigMap", "-config")["metadata"]["name"],
            "{name}"
        );
        assert_eq!(config_file.file_name().unwrap(), "verdict.yaml");
        // The checksum annotation is the config file's.
        let digest = hex::encode(Sha256::digest(r.config_text().trim_end_matches('\n')));
        assert_eq!(r.checksum(), digest, "{name}");

        // Policies: from the policy ConfigMap (or an existing one), or from git-sync's volume.
        let policies = volume_holding(&mounts, &config.policies)
            .unwrap_or_else(|| panic!("{name}: {} is not mounted", config.policies.display()));
        match r.policy_files() {
            Some(files) => {
                assert!(!files.is_empty());
                assert_eq!(
                    policies["configMap"]["name"],
                    r.one("ConfigMap", "-policies")["metadata"]["name"]
                );
            }
            None if policies.get("emptyDir").is_some() => {
                assert!(config.policies.starts_with("/git/current"), "{name}");
            }
            None => assert!(policies["configMap"]["name"].is_string(), "{name}"),
        }
        let policy_mount = daemon["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                config
                    .policies
                    .starts_with(m["mountPath"].as_str().unwrap())
            })
            .unwrap();
        assert_eq!(policy_mount["readOnly"], true, "{name}");
        assert!(
            policy_mount.get("subPath").is_none(),
            "kubelet never updates a subPath mount"
        );

        // Ports: the config's listeners are the container's ports, the Service's targets.
        let ports = container_ports(daemon);
        assert_eq!(ports["grpc"], port_of(config.listen), "{name}");
        assert_eq!(
            ports.get("metrics").copied(),
            config.metrics.listen.0.map(port_of),
            "{name}"
        );
        assert_eq!(
            ports.get("http").copied(),
            config.http.listen.0.map(port_of),
            "{name}"
        );
        let service = r.one("Service", "");
        let service_ports: BTreeSet<String> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let target = p["targetPort"].as_str().unwrap();
                assert!(ports.contains_key(target), "{name}: {target}");
                assert_eq!(p["port"].as_u64(), ports.get(target).copied());
                p["name"].as_str().unwrap().to_string()
            })
            .collect();
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(&service["spec"]["selector"], selector, "{name}");
        assert!(subset(
            selector,
            &deployment["spec"]["template"]["metadata"]["labels"]
        ));

        // Probes: gRPC health, or with TLS (which kubelet's gRPC probes cannot speak) the plain
        // HTTP /healthz of the metrics listener.
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let p = &daemon[probe];
            if config.tls.enabled() {
                assert_eq!(p["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
                assert!(ports.contains_key("metrics"));
            } else {
                assert_eq!(p["grpc"]["port"].as_u64(), Some(port_of(config.listen)));
            }
        }
        // TLS files come from the mounted Secrets.
        for file in [&config.tls.cert, &config.tls.key, &config.tls.client_ca]
            .into_iter()
            .flatten()
        {
            let volume = volume_holding(&mounts, file).expect("TLS files are mounted");
            assert!(volume["secret"]["secretName"].is_string(), "{name}");
        }
        // A decision log in a file gets a writable emptyDir (the root filesystem is read-only).
        if config.audit.output != "stdout" {
            let volume = volume_holding(&mounts, Path::new(&config.audit.output)).unwrap();
            assert!(volume["emptyDir"]["sizeLimit"].is_string(), "{name}");
        }

        // Shutdown: kubelet waits longer than the daemon drains and finishes requests.
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > config.shutdown.drain_secs + config.shutdown.timeout_secs,
            "{name}: grace {grace}"
        );

        // HPA, PDB, ServiceMonitor point at what the chart renders.
        match r.all("HorizontalPodAutoscaler").as_slice() {
            [] => assert!(deployment["spec"]["replicas"].is_u64(), "{name}"),
            [hpa] => {
                assert!(deployment["spec"].get("replicas").is_none(), "{name}");
                assert_eq!(
                    hpa["spec"]["scaleTargetRef"]["name"],
                    deployment["metadata"]["name"]
                );
                assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
            }
            more => panic!("{name}: {} HPAs", more.len()),
        }
        for pdb in r.all("PodDisruptionBudget") {
            assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector, "{name}");
        }
        for monitor in r.all("ServiceMonitor") {
            assert!(subset(
                &monitor["spec"]["selector"]["matchLabels"],
                &service["metadata"]["labels"]
            ));
            let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
            assert!(service_ports.contains(port), "{name}: {port}");
        }
    }
}

fn each_feature_renders_what_it_promises() {
    let all = rendered();
    let get = |n: &str| all.iter().find(|r| r.name == n).unwrap();

    let default = get("default");
    let config = default.config();
    assert_eq!(config.listen.to_string(), "0.0.0.0:50051");
    assert_eq!(config.metrics.listen.0.unwrap().to_string(), "0.0.0.0:9464");
    assert!(config.http.listen.0.is_none() && !config.tls.enabled());
    assert_eq!(config.log.format, verdict::config::LogFormat::Json);
    assert!(config.audit.enabled && config.audit.output == "stdout");
    assert_eq!(config.shutdown.drain_secs, 5);
    assert_eq!(config.policies, Path::new("/etc/verdict/policies"));
    assert!(default.pod().get("initContainers").is_none());
    assert!(default.all("HorizontalPodAutoscaler").is_empty());
    assert!(default.all("ServiceMonitor").is_empty());
    assert_eq!(default.all("PodDisruptionBudget").len(), 1);
    assert_eq!(
        default.one("ServiceAccount", "")["metadata"]["name"],
        "verdict"
    );
    assert_eq!(default.daemon()["image"], "verdict:0.1.0");

    // git-sync as a native sidecar: the daemon starts after the first sync.
    let git = get("git-sync");
    assert!(git.policy_files().is_none());
    let sidecar = &git.pod()["initContainers"][0];
    assert_eq!(sidecar["name"], "git-sync");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/");
    let args: Vec<&str> = sidecar["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for arg in [
        "--repo=https://git.example.com/platform/verdict-policies.git",
        "--ref=main",
        "--root=/git",
        "--link=current",
        "--period=15s",
        "--http-bind=:8081",
    ] {
        assert!(args.contains(&arg), "{arg} in {args:?}");
    }
    assert_eq!(
        sidecar["env"][1]["valueFrom"]["secretKeyRef"]["key"],
        "password"
    );
    assert_eq!(
        git.config().policies,
        Path::new("/git/current/policies/clinic")
    );
    assert_eq!(git.pod()["containers"].as_array().unwrap().len(), 1);

    // git-sync on older clusters: one sync before the daemon, then a plain sidecar; SSH.
    let classic = get("git-sync-ssh-classic");
    let init = &classic.pod()["initContainers"][0];
    assert_eq!(init["name"], "git-sync-init");
    assert!(init.get("restartPolicy").is_none());
    assert!(init["args"]
        .as_array()
        .unwrap()
        .contains(&json!("--one-time")));
    assert!(init["args"].as_array().unwrap().contains(&json!("--ssh")));
    let containers = classic.pod()["containers"].as_array().unwrap();
    assert!(containers.iter().any(|c| c["name"] == "git-sync"));
    let secret = classic.pod()["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "git-secret")
        .unwrap();
    assert_eq!(secret["secret"]["defaultMode"], 0o400);
    assert_eq!(classic.config().policies, Path::new("/git/current"));

    // TLS and mutual TLS.
    let tls = get("tls").config();
    assert_eq!(
        tls.tls.cert.as_deref(),
        Some(Path::new("/etc/verdict/tls/tls.crt"))
    );
    assert!(tls.tls.client_ca.is_none() && tls.http.listen.0.is_some());
    let mtls = get("mtls");
    assert_eq!(
        mtls.config().tls.client_ca.as_deref(),
        Some(Path::new("/etc/verdict/client-ca/clients.pem"))
    );
    assert_eq!(mtls.config().tls.reload_secs, 30);

    // Policies inline, or from a ConfigMap someone else manages.
    let inline = get("inline-policies").policy_files().unwrap();
    assert_eq!(inline.keys().collect::<Vec<_>>(), ["readers.yaml"]);
    let existing = get("existing-configmap");
    assert!(existing.policy_files().is_none());
    assert!(existing.text.contains("name: platform-verdict-policies"));

    // HPA on CPU and memory, PDB by minAvailable; ServiceMonitor where Prometheus looks.
    let hpa = get("hpa");
    let metrics = &hpa.one("HorizontalPodAutoscaler", "")["spec"]["metrics"];
    assert_eq!(metrics[0]["resource"]["target"]["averageUtilization"], 60);
    assert_eq!(metrics[1]["resource"]["name"], "memory");
    assert_eq!(
        hpa.one("PodDisruptionBudget", "")["spec"],
        json!({"minAvailable": "50%", "selector": {"matchLabels": {"app.kubernetes.io/name": "verdict", "app.kubernetes.io/instance": "verdict"}}})
    );
    let monitor = get("service-monitor").one("ServiceMonitor", "");
    assert_eq!(monitor["metadata"]["namespace"], "monitoring");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["verdict"])
    );

    // Token keys from a JWKS in a ConfigMap (mounted whole), or from an OpenID Connect issuer
    // whose private CA comes from a Secret (no JWKS volume then).
    let tokens = get("tokens");
    let keys = tokens.config().tokens;
    let jwks_file = keys.jwks_file.expect("a JWKS file");
    let mounted = mounts(tokens.pod(), tokens.daemon());
    assert_eq!(
        volume_holding(&mounted, &jwks_file).unwrap()["configMap"]["name"],
        "idp-jwks"
    );
    assert!(keys.jwks_url.is_none() && keys.oidc_issuer.is_none() && keys.jwks_ca_file.is_none());
    let oidc = get("oidc");
    let keys = oidc.config().tokens;
    assert_eq!(
        keys.oidc_issuer.as_deref(),
        Some("https://idp.example.org/realms/clinic")
    );
    assert_eq!(keys.effective_issuer(), keys.oidc_issuer.as_deref());
    assert!(keys.jwks_file.is_none() && keys.issuer.is_none());
    assert_eq!(keys.jwks_refresh_min_secs, 30);
    let mounted = mounts(oidc.pod(), oidc.daemon());
    let ca = keys.jwks_ca_file.expect("the CA file");
    assert_eq!(
        volume_holding(&mounted, &ca).unwrap()["secret"]["secretName"],
        "idp-ca"
    );
    assert!(!oidc.text.contains("name: jwks\n"), "no JWKS volume");

    // The decision log in a file, shipped by a sidecar that mounts the same volume.
    let audit = get("audit-file");
    assert_eq!(
        audit.config().audit.output,
        "/var/log/verdict/decisions.jsonl"
    );
    assert!(audit.text.contains("sizeLimit: 512Mi"));

    // Everything else.
    let sink = get("kitchen-sink");
    let config = sink.config();
    assert_eq!(config.listen.to_string(), "[::]:9090");
    assert!(!config.reload.watch && config.limits.max_actions == 20);
    assert!(!config.reload.require_tests);
    assert!(
        get("tokens").config().reload.require_tests,
        "the reload gate is on by default"
    );
    assert_eq!(config.log.level, "verdict=debug,info");
    // The web UI on the pod's loopback only (kubectl port-forward), off by default.
    assert_eq!(config.ui.listen.0.unwrap().to_string(), "127.0.0.1:9081");
    assert_eq!(config.ui.allowed_hosts, ["verdict.example.org"]);
    assert!(get("tokens").config().ui.listen.0.is_none());
    assert!(sink.daemon()["image"]
        .as_str()
        .unwrap()
        .starts_with("registry.example.com/platform/verdict@sha256:"));
    assert_eq!(sink.one("Service", "")["spec"]["clusterIP"], "None");
    assert_eq!(sink.pod()["terminationGracePeriodSeconds"], 60);
    assert!(sink.all("PodDisruptionBudget").is_empty());
}

/// The dotted key paths of a YAML/JSON tree, maps only.
fn key_paths(value: &Json, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            key_paths(v, &path, out);
            out.insert(path);
        }
    }
}

fn every_rendered_config_is_a_valid_daemon_config_with_every_setting_spelled_out() {
    let all = rendered();
    let mut every_setting = BTreeSet::new();
    key_paths(
        &serde_json::to_value(Config::default()).unwrap(),
        "",
        &mut every_setting,
    );
    for r in all {
        let config = r.config();
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: the daemon would refuse it: {e}", r.name));
        let rendered: Json = serde_yaml_ng::from_str(&r.config_text()).unwrap();
        let mut keys = BTreeSet::new();
        key_paths(&rendered, "", &mut keys);
        assert_eq!(
            keys, every_setting,
            "{}: the chart's config must name every daemon setting (a new setting needs a value)",
            r.name
        );
    }
}

fn the_checksum_rolls_pods_on_settings_changes_and_not_on_policy_changes() {
    let helm = helm();
    let render = |args: &[&str]| Rendering::parse("x", template(&helm, KUBE, args).unwrap());
    let base = render(&[]);
    for setting in [
        "log.level=debug",
        "shutdown.drainSecs=7",
        "limits.maxResources=10",
    ] {
        let changed = render(&["--set", setting]);
        assert_ne!(base.checksum(), changed.checksum(), "{setting}");
    }
    let policies = render(&[
        "--set",
        "policies.source=inline",
        "--set-string",
        "policies.inline.only\\.yaml=capabilities:\n  name: c\n  capabilities: []\n",
    ]);
    assert_ne!(base.policy_files(), policies.policy_files());
    assert_eq!(
        base.checksum(),
        policies.checksum(),
        "a policy change must hot-reload, not roll the pods"
    );
}

fn settings_that_do_not_fit_fail_at_install_with_a_message_naming_them() {
    let helm = helm();
    for (args, message) in [
        (
            &[
                "--set",
                "tls.enabled=true,tls.secretName=t,metrics.enabled=false",
            ][..],
            "tls.enabled needs metrics.enabled",
        ),
        (
            &["--set", "tls.clientCA.enabled=true"],
            "tls.clientCA.enabled (mutual TLS) needs tls.enabled",
        ),
        (
            &["--set", "policies.source=inline"],
            "policies.inline is empty",
        ),
        (
            &["--set", "terminationGracePeriodSeconds=30"],
            "terminationGracePeriodSeconds 30 must exceed",
        ),
        (
            &["--set", "serviceMonitor.enabled=true,metrics.enabled=false"],
            "serviceMonitor.enabled needs metrics.enabled",
        ),
        (
            &["--set", "http.enabled=true,http.port=9464"],
            "http.port 9464",
        ),
        (&["--set", "podDisruptionBudget.minAvailable=1"], "not both"),
        (
            &["--set", "tokens.enabled=true,tokens.audiences={verdict}"],
            "tokens.enabled: set where the keys are",
        ),
        (
            &[
                "--set",
                "tokens.enabled=true,tokens.audiences={verdict},tokens.jwksUrl=https://idp/jwks,tokens.oidcIssuer=https://idp",
            ],
            "are alternatives",
        ),
        (
            &[
                "--set",
                "tokens.enabled=true,tokens.audiences={verdict},tokens.jwksUrl=https://idp/jwks",
            ],
            "tokens.enabled needs tokens.issuer",
        ),
        (&["--set", "tokens.jwksUrl=http://idp/jwks"], "tokens/jwksUrl"),
        // values.schema.json: unknown keys, enums, types, required settings.
        (&["--set", "replicas=3"], "additional properties 'replicas'"),
        (&["--set", "log.format=xml"], "log/format"),
        (&["--set", "limits.maxResources=0"], "limits/maxResources"),
        (&["--set", "policies.source=gitSync"], "gitSync/repo"),
        (&["--set", "audit.output=decisions.log"], "audit/output"),
    ] {
        let error = template(&helm, KUBE, args).expect_err(message);
        assert!(error.contains(message), "{args:?}: {error}");
    }
}

/// The policy files of a directory (test suites aside): name -> bytes.
fn policy_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !verdict::policy::is_test_suite(p))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The bundled clinic policies, as the chart ships them: its `policies/` must hold the same
/// files, byte for byte (the test suite aside).
fn the_chart_ships_the_bundled_clinic_policies_byte_for_byte() {
    let bundled = policy_files(&root().join("policies/clinic"));
    let shipped = policy_files(&chart().join("policies"));
    assert!(
        bundled == shipped,
        "helm/verdict/policies differs from policies/clinic; to update it:\n  \
         find helm/verdict/policies -name '*.yaml' -delete && \
         find policies/clinic -maxdepth 1 -name '*.yaml' ! -name '*_test.yaml' -exec cp {{}} helm/verdict/policies/ \\;"
    );
    // And so the same version: the policy version is a hash of content, not of the layout
    // (`policies/`, `policies/clinic/` and the chart's flat copy are three layouts).
    let version = |dir: &Path| verdict::compile::PolicySet::load(dir).unwrap().version;
    let local = version(&root().join("policies"));
    assert_eq!(version(&root().join("policies/clinic")), local);
    assert_eq!(version(&chart().join("policies")), local);
}

/// The default rendering's policy ConfigMap carries exactly the chart's policies.
fn the_default_rendering_carries_the_shipped_policies() {
    let default = rendered().iter().find(|r| r.name == "default").unwrap();
    let files = default.policy_files().unwrap();
    let as_text: BTreeMap<String, String> = policy_files(&chart().join("policies"))
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(files, as_text);
}

/// The schema's properties: dotted path -> node; descends into objects it closes
/// (`additionalProperties: false`), which must require every property they declare.
fn schema_paths(node: &Json, prefix: &str, out: &mut BTreeMap<String, Json>) {
    let Some(properties) = node["properties"].as_object() else {
        return;
    };
    assert_eq!(
        node["additionalProperties"], false,
        "{prefix}: objects of the schema reject unknown keys"
    );
    let mut required: Vec<&str> = node["required"]
        .as_array()
        .unwrap_or_else(|| panic!("{prefix}: no required"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    let mut declared: Vec<&str> = properties.keys().map(String::as_str).collect();
    declared.sort();
    assert_eq!(required, declared, "{prefix}: every value is required");
    for (k, v) in properties {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        assert!(
            v.get("type").is_some() || v.get("oneOf").is_some(),
            "{path}: no type"
        );
        out.insert(path.clone(), v.clone());
        schema_paths(v, &path, out);
    }
}

fn the_values_schema_types_every_value_and_the_chart_readme_documents_each() {
    let values: Json =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let schema: Json =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    let mut documented = BTreeMap::new();
    schema_paths(&schema, "", &mut documented);
    // Every value of values.yaml is in the schema, down to the objects it leaves open
    // (Kubernetes objects passed through, such as resources and securityContext).
    let mut keys = BTreeSet::new();
    key_paths(&values, "", &mut keys);
    for key in &keys {
        let open_parent = documented.iter().any(|(path, node)| {
            key.starts_with(&format!("{path}.")) && node.get("properties").is_none()
        });
        assert!(
            documented.contains_key(key) || open_parent,
            "values.yaml: {key} is not in values.schema.json"
        );
    }
    for path in documented.keys() {
        let mut node = &values;
        for part in path.split('.') {
            node = &node[part];
        }
        assert!(
            !node.is_null(),
            "values.schema.json: {path} has no default in values.yaml"
        );
    }
    // The chart README has a row for each.
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    for (path, node) in &documented {
        if node.get("properties").is_none() {
            assert!(
                readme.contains(&format!("| `{path}` |")),
                "helm/verdict/README.md has no row for `{path}`"
            );
        }
    }
}

fn the_dockerfile_builds_locked_and_runs_distroless_nonroot_on_the_charts_ports() {
    use clap::Parser as _;
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let instruction = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(name).map(str::trim))
            .collect()
    };
    let stages = instruction("FROM ");
    assert_eq!(stages.len(), 2, "a builder and a runtime stage: {stages:?}");
    let builder = stages[0];
    assert!(
        builder.starts_with("rust:") && builder.ends_with("-bookworm AS build"),
        "the builder is Debian 12 (bookworm), the glibc of distroless/cc-debian12: {builder}"
    );
    let rust: Vec<u32> = builder["rust:".len()..]
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    let cargo_toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv: Vec<u32> = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        rust >= msrv,
        "the builder's Rust {rust:?} >= rust-version {msrv:?}"
    );
    assert_eq!(stages[1], "gcr.io/distroless/cc-debian12:nonroot");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("COPY --from=build /out/verdict /usr/local/bin/verdict"));

    // The user is the chart's runAsUser, by number (runAsNonRoot cannot check a name).
    let values: Json =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let uid = values["securityContext"]["runAsUser"].as_u64().unwrap();
    assert_eq!(instruction("USER "), [format!("{uid}:{uid}").as_str()]);

    // The exposed ports are the chart's; the default command is a valid `serve` on them.
    let exposed: BTreeSet<u64> = instruction("EXPOSE ")
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    let grpc = values["grpc"]["port"].as_u64().unwrap();
    let metrics = values["metrics"]["port"].as_u64().unwrap();
    assert_eq!(exposed, BTreeSet::from([grpc, metrics]));
    let entrypoint: Vec<String> = serde_json::from_str(instruction("ENTRYPOINT ")[0]).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/verdict"]);
    let cmd: Vec<String> = serde_json::from_str(instruction("CMD ")[0]).unwrap();
    let cli = verdict::cli::Cli::try_parse_from(std::iter::once("verdict".to_string()).chain(cmd))
        .expect("CMD parses");
    let verdict::cli::Command::Serve(serve) = cli.command else {
        panic!("CMD is not serve")
    };
    let config = serve.config().expect("CMD is a valid configuration");
    assert_eq!(port_of(config.listen), grpc);
    assert_eq!(config.metrics.listen.0.map(port_of), Some(metrics));
    assert!(
        config.listen.ip().is_unspecified(),
        "reachable from outside the container"
    );
    assert_eq!(config.policies, Path::new("/etc/verdict/policies"));
    assert!(dockerfile.contains("COPY policies/ /etc/verdict/policies/"));

    // The build context holds what the build copies, and nothing else.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(rules[0], "*", "everything is left out unless let in");
    for copy in instruction("COPY ") {
        if copy.starts_with("--from") {
            continue;
        }
        let sources: Vec<&str> = copy.split_whitespace().collect();
        for source in &sources[..sources.len() - 1] {
            let source = source.trim_end_matches('/');
            assert!(
                rules.contains(&format!("!{source}").as_str())
                    || rules.contains(&format!("!{source}/").as_str()),
                ".dockerignore lets {source} in"
            );
        }
    }
}

/// dr-house, a physician of practice 7, reads patient 123 of practice 7 (the README's example),
/// through the `verdict check` command: (policy_version, effect, rule).
fn dr_house_reads_patient_123(daemon: &common::Daemon) -> (String, String, String) {
    let out = Command::new(common::BIN)
        .args(["check", "--json", "--server", &daemon.url()])
        .args([
            "--principal",
            r#"{"id":"dr-house","roles":["physician"],"scopes":["user/*.cruds"],"attr":{"practice_id":"7"}}"#,
            "--resource",
            r#"{"kind":"Patient","id":"123","attr":{"practice_id":"7","patient_id":"123","celebrity":false}}"#,
            "--action",
            "read",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    let read = &v["results"][0]["actions"]["read"];
    (
        v["policy_version"].as_str().unwrap().to_string(),
        read["effect"].as_str().unwrap().to_string(),
        read["rule"].as_str().unwrap_or("").to_string(),
    )
}

/// The version the daemon gives a directory holding exactly these files.
fn version_of(files: &BTreeMap<String, String>) -> String {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(k, v)| (PathBuf::from(k), v.clone()))
        .collect();
    verdict::policy::parse_files(Path::new("."), &files)
        .expect("a good set")
        .version
}

fn pairs(files: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn scrape(daemon: &common::Daemon) -> String {
    let url = format!("http://{}/metrics", daemon.metrics_addr.as_ref().unwrap());
    ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The deployment story end to end, without a cluster: the real daemon runs the chart's rendered
/// config file on the chart's rendered policy ConfigMap, laid out as kubelet mounts it; a
/// `helm upgrade` with changed policies is the kubelet's `..data` swap, and the new
/// `policy_version` shows in Check answers and in `verdict_policy_info`, without a restart.
#[cfg(unix)]
fn the_rendered_policy_configmap_hot_reloads_in_the_daemon_run_on_the_rendered_config() {
    let helm = helm();
    let dir = tempfile::tempdir().unwrap();
    let render = |args: &[&str]| Rendering::parse("x", template(&helm, KUBE, args).unwrap());

    // helm install: the default values (the chart's clinic policies, flattened keys).
    let first = render(&[]);
    let files_a = first.policy_files().unwrap();
    let config_file = dir.path().join("verdict.yaml");
    std::fs::write(&config_file, first.config_text()).unwrap();
    let mount = dir.path().join("policies");
    std::fs::create_dir(&mount).unwrap();
    let mut volume = common::ConfigMapVolume::create(&mount, &pairs(&files_a));
    // The rendered config as is, but for the addresses (flags override the file).
    let daemon = common::Daemon::start(
        &mount,
        &[
            "--config",
            config_file.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(
        daemon.logs().iter().any(|l| l.starts_with('{')),
        "the rendered config's JSON logs"
    );
    let version_a = version_of(&files_a);
    let (version, effect, rule) = dr_house_reads_patient_123(&daemon);
    assert_eq!(
        (version.as_str(), effect.as_str(), rule.as_str()),
        (version_a.as_str(), "EFFECT_ALLOW", "clinical-care")
    );

    // helm upgrade with a policy added: kubelet swaps `..data`; the pods stay, the set changes.
    let mut inline = serde_json::Map::new();
    for (name, text) in &files_a {
        inline.insert(name.clone(), json!(text));
    }
    inline.insert(
        "maintenance.yaml".into(),
        json!("agent_policy:\n  name: maintenance\n  principals: {roles: [physician]}\n  rules:\n    - name: chart-freeze\n      effect: deny\n      actions: [read]\n      kinds: [Patient]\n"),
    );
    let values = dir.path().join("upgrade.yaml");
    std::fs::write(
        &values,
        serde_yaml_ng::to_string(&json!({"policies": {"source": "inline", "inline": inline}}))
            .unwrap(),
    )
    .unwrap();
    let second = render(&["-f", values.to_str().unwrap()]);
    assert_eq!(second.checksum(), first.checksum(), "no rollout");
    let files_b = second.policy_files().unwrap();
    let version_b = version_of(&files_b);
    volume.update(&pairs(&files_b));
    let swapped = Instant::now();
    common::wait_for_blocking("the new ConfigMap is served", || {
        let (version, effect, rule) = dr_house_reads_patient_123(&daemon);
        if version == version_a {
            return false;
        }
        assert_eq!(version, version_b, "only whole sets are served");
        assert_eq!(
            (effect.as_str(), rule.as_str()),
            ("EFFECT_DENY", "chart-freeze")
        );
        true
    });
    eprintln!("ConfigMap swap to served: {:?}", swapped.elapsed());
    let metrics = scrape(&daemon);
    assert!(
        metrics.contains(&format!("verdict_policy_info{{version=\"{version_b}\"}} 1"))
            && metrics.contains(&format!("verdict_policy_info{{version=\"{version_a}\"}} 0")),
        "{metrics}"
    );

    // helm rollback: the added key disappears again.
    volume.update(&pairs(&files_a));
    common::wait_for_blocking("the rollback is served", || {
        dr_house_reads_patient_123(&daemon).0 == version_a
    });
    let metrics = scrape(&daemon);
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("verdict_policy_reloads_total{result=\"failed\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}
