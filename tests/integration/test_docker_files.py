"""docker/: what can be checked without a container engine (scripts/container-check.sh builds and
runs the image with podman).

The Dockerfile builds with scripts/setup.sh --deps and runs weir as a non-root user with a
HEALTHCHECK; docker/etcd/Dockerfile is Debian's etcd on the same base; docker/weir.toml,
docker/weir-fleet.toml and the ConfigMap's weir.toml pass `weir --check`; the token files hold
the digests of the tokens they document; the fleet compose file's etcd members, replicas,
backends and Prometheus targets agree with each other and with the fleet config; the k8s
manifests (parsed as YAML) agree on names, labels and ports, and the ConfigMap's [fleet] names
the StatefulSet's members; the Grafana dashboard queries only metrics weir defines, counts the
guard's error classes and maps every guard state; both compose files pass `docker-compose
config` and `yamllint docker/` passes (each skipped, with the reason, when the tool or
python3-yaml is not installed). Standard library and python3-yaml; no network, no containers;
a few seconds in all.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
import unittest

try:
    import yaml
except ImportError:  # the YAML tests say so and skip
    yaml = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(REPO, "docker")
WEIR_BIN = os.environ.get("WEIR_BIN", os.path.join(REPO, "build", "weir"))

RUNTIME_LIBS = ["libuv1", "libssl3", "libnghttp2-14", "libprometheus-cpp-core1.0",
                "libtomlplusplus3"]


def read(*parts):
    with open(os.path.join(DOCKER, *parts), encoding="utf-8") as f:
        return f.read()


def dockerfile_stages(*path):
    """A Dockerfile (docker/Dockerfile by default) → [[(INSTRUCTION, args), ...] per stage],
    continuation lines joined."""
    stages, logical = [], ""
    for line in read(*(path or ("Dockerfile",))).split("\n"):
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if logical and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        word, _, args = logical.strip().partition(" ")
        logical = ""
        if word.upper() == "FROM":
            stages.append([])
        elif not stages:
            continue  # ARG before the first FROM
        stages[-1].append((word.upper(), " ".join(args.split())))
    return stages


def args_of(stage, instruction):
    return [args for word, args in stage if word == instruction]


def yaml_block(text, key):
    """The literal block scalar `key: |` in a manifest, dedented (no YAML parser needed)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(rf"^(\s*){re.escape(key)}:\s*\|\s*$", line)
        if not m:
            continue
        indent, body = len(m.group(1)), []
        for inner in lines[i + 1:]:
            if inner.strip() and len(inner) - len(inner.lstrip()) <= indent:
                break
            body.append(inner)
        while body and not body[-1].strip():
            body.pop()
        width = min(len(b) - len(b.lstrip()) for b in body if b.strip())
        return "\n".join(b[width:] for b in body) + "\n"
    raise AssertionError(f"no `{key}: |` block")


def run_check(path):
    # The backends' names resolve only inside compose and the cluster.
    return subprocess.run([WEIR_BIN, "--check", path, "--no-resolve"], capture_output=True,
                          text=True, timeout=10, stdin=subprocess.DEVNULL)


def documented_tokens(text):
    """{token: sha256} for each `name (scope): TOKEN` line in a comment."""
    return {tok: hashlib.sha256(tok.encode()).hexdigest()
            for tok in re.findall(r"^#\s*\w+\s+\((?:read|write)\):\s+(\S+)", text, re.M)}


class Dockerfile(unittest.TestCase):
    def setUp(self):
        self.stages = dockerfile_stages()

    def test_multi_stage_on_debian_12_slim(self):
        self.assertGreaterEqual(len(self.stages), 2)
        for line in re.findall(r"^FROM\s+(\S+)", read("Dockerfile"), re.M):
            self.assertEqual(line, "debian:12-slim")

    def test_build_stage_runs_the_setup_script_in_release(self):
        runs = " ".join(args_of(self.stages[0], "RUN"))
        # --deps: only the build dependencies of the shipped binaries, and only those built.
        self.assertRegex(runs, r"WEIR_BUILD_TYPE=Release\s+scripts/setup\.sh\s+--deps\b")
        # No package list of its own: the build dependencies live in setup.sh only.
        self.assertNotIn("apt-get", runs)

    def test_setup_deps_mode_builds_only_the_shipped_binaries(self):
        with open(os.path.join(REPO, "scripts", "setup.sh"), encoding="utf-8") as f:
            setup = f.read()
        build = re.search(r"build_packages=\(([^)]*)\)", setup).group(1).split()
        for test_only in ("doctest-dev", "chromium", "nginx-light", "haproxy", "wrk", "clang"):
            self.assertNotIn(test_only, build)
        self.assertIn("-DWEIR_TESTS=OFF", setup)
        self.assertRegex(setup, r"--target weir weirctl weir-backend\b")

    def test_no_syntax_directive(self):
        """`# syntax=` makes BuildKit pull a frontend image: offline builds fail."""
        self.assertNotRegex(read("Dockerfile"), r"(?im)^#\s*syntax\s*=")

    def test_header_run_command_uses_a_network_with_both_backends(self):
        """The shipped config names blue:9001 and green:9002; the header's commands start them."""
        header = "\n".join(l[1:].strip() for l in read("Dockerfile").split("\n")
                           if l.startswith("#"))
        header = header.replace("\\\n", " ")
        self.assertIn("network create weir-net", header)
        for name, port in (("blue", 9001), ("green", 9002)):
            self.assertRegex(header, rf"--name {name} --network weir-net --entrypoint "
                                     rf"weir-backend weir\s+--name {name} --host 0\.0\.0\.0 "
                                     rf"--port {port}\b")
        self.assertRegex(header, r"-v \S*docker/weir\.toml:/etc/weir/weir\.toml:ro")
        self.assertRegex(header, r"-v weir-state:/var/lib/weir weir\b")
        self.assertNotIn("--demo", header)

    def test_build_stage_copies_every_source_folder_cmake_uses(self):
        copied = {args.split()[0].split("/")[0] for args in args_of(self.stages[0], "COPY")}
        with open(os.path.join(REPO, "CMakeLists.txt"), encoding="utf-8") as f:
            cmake = f.read()
        used = set(re.findall(r"(?<![\w/$}.])([a-z_]+)/[\w/.-]+\.(?:cc|c|h)\b", cmake))
        used |= set(re.findall(r"add_subdirectory\(\s*([\w-]+)", cmake))
        used = {d for d in used if os.path.isdir(os.path.join(REPO, d))}
        used.discard("tests")  # not built in the image (setup.sh --deps: WEIR_TESTS=OFF)
        self.assertTrue(used)
        self.assertLessEqual(used | {"CMakeLists.txt", "scripts"}, copied)

    def test_runtime_stage(self):
        runtime = self.stages[-1]
        installs = " ".join(args_of(runtime, "RUN"))
        for lib in RUNTIME_LIBS:
            self.assertRegex(installs, rf"(?<![\w.-]){re.escape(lib)}(?![\w.-])")
        self.assertNotRegex(installs, r"\S+-dev\b", "no -dev packages at runtime")
        copies = " ".join(args_of(runtime, "COPY"))
        self.assertIn("--from=build", copies)
        self.assertRegex(copies, r"/weir\b")
        self.assertRegex(copies, r"/weirctl\b")
        self.assertRegex(copies, r"/weir-backend\b")

    def test_runs_as_non_root(self):
        users = args_of(self.stages[-1], "USER")
        self.assertTrue(users, "no USER in the runtime stage")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, ("root", "0"))
        # The numeric uid belongs to the weir user created in the image.
        runs = " ".join(args_of(self.stages[-1], "RUN"))
        self.assertRegex(runs, rf"useradd\b[^&]*--uid {re.escape(user)}\b[^&]*\bweir\b"
                         if user.isdigit() else rf"useradd\b[^&]*\b{re.escape(user)}\b")

    def test_ports_healthcheck_volumes_entrypoint(self):
        runtime = self.stages[-1]
        exposed = " ".join(args_of(runtime, "EXPOSE")).split()
        self.assertIn("8080", exposed)
        self.assertIn("9901", exposed)
        checks = args_of(runtime, "HEALTHCHECK")
        self.assertEqual(len(checks), 1)
        self.assertIn("http://127.0.0.1:9901/healthz", checks[0])
        self.assertIn("CMD", checks[0].split())
        volumes = " ".join(args_of(runtime, "VOLUME"))
        # The state dir only: a VOLUME on /etc/weir leaves an anonymous volume per container.
        self.assertEqual(volumes, '["/var/lib/weir"]')
        entry = args_of(runtime, "ENTRYPOINT")
        self.assertEqual([json.loads(e) for e in entry],
                         [["weir", "--config", "/etc/weir/weir.toml"]])


def check_config(test, text, tokens_text, name):
    """weir --check on text (with tokens_file pointed at tokens_text) in a temp dir."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "tokens.toml"), "w") as f:
            f.write(tokens_text)
        text = re.sub(r'(?m)^(\s*tokens_file\s*=\s*)"[^"]*"', r'\1"tokens.toml"', text)
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        run = run_check(path)
        test.assertEqual(run.returncode, 0, f"weir --check {name}:\n{run.stderr}")


class Configs(unittest.TestCase):
    def check(self, text, tokens_text, name):
        check_config(self, text, tokens_text, name)

    def test_compose_weir_toml_passes_check(self):
        self.check(read("weir.toml"), read("tokens.toml"), "weir.toml")

    def test_configmap_weir_toml_passes_check(self):
        self.check(yaml_block(read("k8s", "configmap.yaml"), "weir.toml"),
                   yaml_block(read("k8s", "secret.yaml"), "tokens.toml"), "weir.toml")

    def test_admin_table_is_checked(self):
        run = run_check(os.path.join(DOCKER, "weir.toml"))  # tokens_file next to it, as is
        self.assertEqual(run.returncode, 0, run.stderr)

    def test_configs_agree_with_the_image(self):
        """Ports, state dir and blue/green weights match the Dockerfile and the brief."""
        for label, text in [("docker/weir.toml", read("weir.toml")),
                            ("configmap", yaml_block(read("k8s", "configmap.yaml"),
                                                     "weir.toml"))]:
            with self.subTest(label):
                c = tomllib.loads(text)
                self.assertEqual(c["admin"]["address"], "0.0.0.0:9901")
                self.assertEqual(c["admin"]["state_dir"], "/var/lib/weir")
                self.assertTrue(c["admin"].get("open_healthz", True))
                self.assertEqual([ln["address"] for ln in c["listener"]], ["0.0.0.0:8080"])
                svc = c["service"][0]
                self.assertEqual({v["name"]: v["weight"] for v in svc["version"]},
                                 {"blue": 90, "green": 10})
                self.assertEqual(set(svc["guard"]), {"interval_ms", "window_s", "min_requests",
                                                     "max_error_rate", "consecutive"})

    def test_tokens_are_the_digests_of_the_documented_tokens(self):
        demo = read("tokens.toml")
        documented = documented_tokens(demo)
        self.assertEqual(len(documented), 2, "document each demo token in a comment")
        tokens = {t["name"]: t for t in tomllib.loads(demo)["token"]}
        self.assertEqual({t["sha256"] for t in tokens.values()}, set(documented.values()))
        scraper = read("prometheus-token").strip()
        self.assertEqual(tokens["prometheus"]["sha256"],
                         hashlib.sha256(scraper.encode()).hexdigest())
        self.assertEqual(tokens["prometheus"]["scope"], "read")

        secret = read("k8s", "secret.yaml")
        example = re.search(r"printf %s (\S+) \| sha256sum", secret).group(1)
        k8s = tomllib.loads(yaml_block(secret, "tokens.toml"))["token"]
        self.assertEqual([t["sha256"] for t in k8s],
                         [hashlib.sha256(example.encode()).hexdigest()])

    def test_grace_period_outlasts_prestop_and_drain(self):
        deployment = read("k8s", "deployment.yaml")
        grace = int(re.search(r"terminationGracePeriodSeconds:\s*(\d+)", deployment).group(1))
        sleep = int(re.search(r'command:\s*\["sleep",\s*"(\d+)"\]', deployment).group(1))
        drain_ms = tomllib.loads(yaml_block(read("k8s", "configmap.yaml"), "weir.toml"))[
            "proxy"]["drain_timeout_ms"]
        self.assertGreater(grace, sleep + drain_ms / 1000)
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertRegex(deployment, rf"{probe}:\s*\n\s*httpGet:\s*\n\s*path: /healthz\s*\n"
                                         rf"\s*port: admin\b")
        self.assertRegex(deployment, r"name: admin\s*\n\s*containerPort: 9901\b")

    def test_dashboard_shows_the_issue_5_metrics(self):
        dash = json.loads(read("grafana", "dashboards", "weir.json"))
        exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
        for metric in ("weir_requests_total", "weir_request_duration_seconds_bucket",
                       "weir_version_weight", "weir_upstream_errors_total"):
            self.assertIn(metric, exprs)
        self.assertIn("histogram_quantile(0.99", exprs)
        provisioned = read("grafana", "provisioning", "datasources", "prometheus.yaml")
        uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
        self.assertEqual(uids, set(re.findall(r"^\s*uid:\s*(\S+)", provisioned, re.M)))


def load_yaml(*parts):
    """Every document of a YAML file in docker/ (python3-yaml, which docker-compose and
    yamllint depend on)."""
    if yaml is None:
        raise unittest.SkipTest("python3-yaml is not installed (Debian package python3-yaml; "
                                "docker-compose and yamllint pull it in)")
    with open(os.path.join(DOCKER, *parts), encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifests(*names):
    """{(kind, name): object} of the k8s manifests names (every file when none)."""
    files = names or sorted(os.path.basename(p)
                            for p in glob.glob(os.path.join(DOCKER, "k8s", "*.yaml")))
    out = {}
    for name in files:
        for doc in load_yaml("k8s", name):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def container_env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def parse_cluster(text):
    """etcd's --initial-cluster "a=URL,b=URL" → {name: URL}."""
    return dict(item.split("=", 1) for item in text.split(","))


def image_uid(*dockerfile):
    users = args_of(dockerfile_stages(*dockerfile)[-1], "USER")
    return int(users[-1].split(":")[0])


def metric_families():
    """The metric family names weir's /metrics code defines (proxy/metrics.cc)."""
    with open(os.path.join(REPO, "proxy", "metrics.cc"), encoding="utf-8") as f:
        return set(re.findall(r'"(weir_[a-z0-9_]+)"', f.read()))


def dashboard():
    return json.loads(read("grafana", "dashboards", "weir.json"))


def panel(title_start):
    found = [p for p in dashboard()["panels"] if p["title"].startswith(title_start)]
    assert len(found) == 1, f"{len(found)} panels titled {title_start!r}..."
    return found[0]


class EtcdImage(unittest.TestCase):
    def test_debian_etcd_on_the_weir_base_as_a_fixed_non_root_uid(self):
        stages = dockerfile_stages("etcd", "Dockerfile")
        self.assertEqual(len(stages), 1)
        text = read("etcd", "Dockerfile")
        self.assertEqual(re.findall(r"^FROM\s+(\S+)", text, re.M),
                         re.findall(r"^FROM\s+(\S+)", read("Dockerfile"), re.M)[-1:])
        runs = " ".join(args_of(stages[0], "RUN"))
        for package in ("etcd-server", "etcd-client", "curl"):
            self.assertRegex(runs, rf"(?<![\w.-]){package}(?![\w.-])")
        uid = image_uid("etcd", "Dockerfile")
        self.assertNotEqual(uid, 0)
        self.assertRegex(runs, rf"useradd\b[^&]*--uid {uid}\b[^&]*\betcd\b")
        self.assertNotEqual(uid, image_uid(), "weir and etcd run as different users")
        self.assertNotRegex(text, r"(?im)^#\s*syntax\s*=")

    def test_data_on_the_volume_health_ports(self):
        stage = dockerfile_stages("etcd", "Dockerfile")[0]
        self.assertEqual(" ".join(args_of(stage, "VOLUME")), '["/var/lib/etcd"]')
        entry = json.loads(args_of(stage, "ENTRYPOINT")[0])
        self.assertEqual(entry[0], "etcd")
        data = entry[entry.index("--data-dir") + 1]
        self.assertTrue(data.startswith("/var/lib/etcd/"), data)  # etcd makes it, mode 700
        self.assertEqual(sorted(" ".join(args_of(stage, "EXPOSE")).split()), ["2379", "2380"])
        checks = args_of(stage, "HEALTHCHECK")
        self.assertEqual(len(checks), 1)
        self.assertIn("http://127.0.0.1:2379/health", checks[0])


class ComposeFleet(unittest.TestCase):
    def setUp(self):
        self.compose = load_yaml("compose-fleet.yaml")[0]
        self.services = self.compose["services"]
        self.fleet_toml = tomllib.loads(read("weir-fleet.toml"))
        self.etcd = sorted(n for n, s in self.services.items()
                           if s.get("build", {}).get("context") == "./etcd")
        self.weirs = sorted(n for n, s in self.services.items()
                            if any(v.startswith("./weir-fleet.toml:")
                                   for v in s.get("volumes", [])))

    def test_fleet_config_passes_check(self):
        check_config(self, read("weir-fleet.toml"), read("tokens.toml"), "weir.toml")

    def test_fleet_config_is_the_demo_config_plus_fleet(self):
        demo = tomllib.loads(read("weir.toml"))
        fleet = dict(self.fleet_toml)
        table = fleet.pop("fleet")
        self.assertEqual(fleet, demo)
        self.assertEqual(table["store"], "etcd")
        self.assertNotIn("replica", table, "one file for both replicas: names from host names")
        self.assertEqual(set(table) - {"store", "endpoints", "prefix", "timeout_ms",
                                       "lease_ttl_s"}, set())

    def test_three_etcd_members_that_name_each_other(self):
        self.assertEqual(self.etcd, ["etcd1", "etcd2", "etcd3"])
        volumes = set()
        for name in self.etcd:
            s = self.services[name]
            env = s["environment"]
            self.assertEqual(parse_cluster(env["ETCD_INITIAL_CLUSTER"]),
                             {n: f"http://{n}:2380" for n in self.etcd})
            self.assertEqual(env["ETCD_INITIAL_CLUSTER_STATE"], "new")
            self.assertEqual(env["ETCD_LISTEN_CLIENT_URLS"], "http://0.0.0.0:2379")
            self.assertEqual(env["ETCD_LISTEN_PEER_URLS"], "http://0.0.0.0:2380")
            self.assertEqual(s["hostname"], name)
            self.assertEqual(sorted(s["command"]),
                             sorted([f"--name={name}",
                                     f"--advertise-client-urls=http://{name}:2379",
                                     f"--initial-advertise-peer-urls=http://{name}:2380"]))
            self.assertIn("http://127.0.0.1:2379/health", " ".join(s["healthcheck"]["test"]))
            [volume] = s["volumes"]
            self.assertTrue(volume.endswith(":/var/lib/etcd"), volume)
            volumes.add(volume.split(":")[0])
        self.assertEqual(len(volumes), 3, "one data volume per member")
        self.assertLessEqual(volumes, set(self.compose["volumes"]))

    def test_two_replicas_on_the_members_and_the_backends(self):
        self.assertEqual(self.weirs, ["weir-a", "weir-b"])
        self.assertEqual(self.fleet_toml["fleet"]["endpoints"],
                         [f"http://{n}:2379" for n in self.etcd])
        admin_port = int(self.fleet_toml["admin"]["address"].rsplit(":", 1)[1])
        data_port = int(self.fleet_toml["listener"][0]["address"].rsplit(":", 1)[1])
        host_ports, states = set(), set()
        for name in self.weirs:
            s = self.services[name]
            self.assertEqual(s["hostname"], name, "the replica's name is HOSTNAME:admin port")
            self.assertEqual(s["build"]["dockerfile"], "docker/Dockerfile")
            self.assertEqual(set(s["depends_on"]), {"blue", "green", *self.etcd})
            published = {int(p.rsplit(":", 1)[1]): p for p in s["ports"]}
            self.assertEqual(set(published), {admin_port, data_port})
            self.assertTrue(published[admin_port].startswith("127.0.0.1:"),
                            "the admin API on the host's loopback only")
            host_ports |= {p.rsplit(":", 2)[-2] for p in s["ports"]}
            self.assertIn("./weir-fleet.toml:/etc/weir/weir.toml:ro", s["volumes"])
            self.assertIn("./tokens.toml:/etc/weir/tokens.toml:ro", s["volumes"])
            [state] = [v for v in s["volumes"] if v.endswith(":/var/lib/weir")]
            states.add(state.split(":")[0])
        self.assertEqual(len(host_ports), 4, "each replica on host ports of its own")
        self.assertEqual(len(states), 2, "a state volume per replica")
        endpoints = {e for v in self.fleet_toml["service"][0]["version"] for e in v["endpoints"]}
        for endpoint in endpoints:
            host, port = endpoint.split(":")
            self.assertIn(host, self.services)
            self.assertIn(f"--port {port}", " ".join(self.services[host]["entrypoint"]))

    def test_prometheus_scrapes_both_replicas(self):
        prom = self.services["prometheus"]
        self.assertIn("./prometheus-fleet.yml:/etc/prometheus/prometheus.yml:ro", prom["volumes"])
        self.assertIn("./prometheus-token:/etc/prometheus/weir-token:ro", prom["volumes"])
        [job] = load_yaml("prometheus-fleet.yml")[0]["scrape_configs"]
        admin_port = self.fleet_toml["admin"]["address"].rsplit(":", 1)[1]
        self.assertEqual(job["static_configs"][0]["targets"],
                         [f"{n}:{admin_port}" for n in self.weirs])
        self.assertEqual(job["authorization"]["credentials_file"], "/etc/prometheus/weir-token")
        # The same Grafana provisioning as the single-replica demo.
        single = load_yaml("compose.yaml")[0]["services"]["grafana"]
        self.assertEqual(self.services["grafana"]["volumes"], single["volumes"])


class Kubernetes(unittest.TestCase):
    def setUp(self):
        self.objects = manifests()
        self.sts = self.objects[("StatefulSet", "weir-etcd")]
        self.etcd_svc = self.objects[("Service", self.sts["spec"]["serviceName"])]
        self.weir = self.objects[("Deployment", "weir")]

    def test_every_object_is_labelled_and_selectors_match(self):
        for (kind, name), obj in self.objects.items():
            with self.subTest(f"{kind}/{name}"):
                self.assertIn("app.kubernetes.io/name", obj["metadata"]["labels"])
        for workload in (self.sts, self.weir):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            for k, v in workload["spec"]["selector"]["matchLabels"].items():
                self.assertEqual(labels[k], v)
        for (kind, name), obj in self.objects.items():
            if kind != "Service":
                continue
            with self.subTest(f"Service/{name}"):
                targets = [w for w in (self.sts, self.weir)
                           if obj["spec"]["selector"].items() <=
                           w["spec"]["template"]["metadata"]["labels"].items()]
                self.assertEqual(len(targets), 1, "a Service selects one workload")
                ports = {p["name"]: p["containerPort"]
                         for c in targets[0]["spec"]["template"]["spec"]["containers"]
                         for p in c["ports"]}
                for p in obj["spec"]["ports"]:
                    self.assertIn(p["targetPort"], ports, "targetPort names a container port")

    def test_etcd_statefulset(self):
        spec = self.sts["spec"]
        self.assertEqual(spec["replicas"], 3)
        self.assertEqual(spec["podManagementPolicy"], "Parallel",
                         "OrderedReady would wait for member 0's readiness, which needs a quorum")
        svc = self.etcd_svc["spec"]
        self.assertEqual(svc["clusterIP"], "None")
        self.assertTrue(svc["publishNotReadyAddresses"], "peers resolve before any is ready")
        self.assertEqual({p["name"]: p["port"] for p in svc["ports"]},
                         {"client": 2379, "peer": 2380})
        pod = spec["template"]["spec"]
        [c] = pod["containers"]
        self.assertEqual({p["name"]: p["containerPort"] for p in c["ports"]},
                         {"client": 2379, "peer": 2380})
        self.assertEqual(pod["securityContext"]["runAsUser"], image_uid("etcd", "Dockerfile"))
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        env = container_env(c)
        self.assertEqual(env["POD_NAME"], {"fieldRef": {"fieldPath": "metadata.name"}})
        sts, headless = self.sts["metadata"]["name"], self.etcd_svc["metadata"]["name"]
        self.assertEqual(parse_cluster(env["ETCD_INITIAL_CLUSTER"]),
                         {f"{sts}-{i}": f"http://{sts}-{i}.{headless}:2380"
                          for i in range(spec["replicas"])})
        self.assertEqual(env["ETCD_INITIAL_CLUSTER_STATE"], "new")
        self.assertEqual(sorted(c["args"]), sorted([
            "--name=$(POD_NAME)",
            f"--advertise-client-urls=http://$(POD_NAME).{headless}:2379",
            f"--initial-advertise-peer-urls=http://$(POD_NAME).{headless}:2380"]))
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/health", "port": "client"})
        self.assertNotIn("httpGet", c["livenessProbe"],
                         "liveness on /health would restart members that only lack a quorum")
        [claim] = spec["volumeClaimTemplates"]
        [mount] = c["volumeMounts"]
        self.assertEqual(mount["name"], claim["metadata"]["name"])
        self.assertEqual(mount["mountPath"], "/var/lib/etcd")

    def test_weir_configmap_is_a_fleet_on_the_statefulset(self):
        config = self.objects[("ConfigMap", "weir-config")]
        c = tomllib.loads(config["data"]["weir.toml"])
        sts, headless = self.sts["metadata"]["name"], self.etcd_svc["metadata"]["name"]
        self.assertEqual(c["fleet"]["endpoints"],
                         [f"http://{sts}-{i}.{headless}:2379"
                          for i in range(self.sts["spec"]["replicas"])])
        self.assertEqual(c["fleet"]["store"], "etcd")
        self.assertNotIn("replica", c["fleet"], "one ConfigMap for every pod: names from pods")
        pod = self.weir["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        self.assertEqual(volumes[mounts["/etc/weir"]]["configMap"]["name"], "weir-config")
        self.assertEqual(volumes[mounts["/etc/weir-tokens"]]["secret"]["secretName"],
                         "weir-tokens")
        self.assertIn(mounts[c["admin"]["state_dir"]], volumes)
        self.assertIn(("Secret", "weir-tokens"), self.objects)
        self.assertEqual(pod["securityContext"]["runAsUser"], image_uid())

    def test_readme_steers_any_replica_and_loops_only_without_fleet(self):
        text = read("k8s", "README.md")
        self.assertNotIn("Once the admin API lands", text)
        self.assertIn("## Steering any replica (fleet mode)", text)
        fleet, _, single = text.partition("## Steering every replica (without `[fleet]`)")
        self.assertTrue(single, "a section for replicas without [fleet]")
        self.assertNotIn("for pod in", fleet)
        self.assertIn("for pod in", single)
        for name in (f for f in os.listdir(os.path.join(DOCKER, "k8s")) if f.endswith(".yaml")):
            self.assertIn(f"`{name}`", text, f"README.md's table lists {name}")


class Dashboard(unittest.TestCase):
    def test_every_queried_metric_is_one_weir_defines(self):
        wanted = {m for p in dashboard()["panels"] for t in p["targets"]
                  for m in re.findall(r"\b(weir_[a-z0-9_]+)", t["expr"])}
        # Histograms are queried by their _bucket series.
        wanted = {re.sub(r"_bucket$", "", m) for m in wanted}
        self.assertEqual(sorted(wanted - metric_families()), [])

    def test_error_rate_counts_what_the_guard_counts(self):
        """The guard's error rate is (5xx + cut) / completed (health/stats_window.cc)."""
        [t] = panel("Error rate by version")["targets"]
        numerator, _, denominator = t["expr"].partition(" / ")
        self.assertRegex(numerator, r'code_class=~"(5xx\|cut|cut\|5xx)"')
        self.assertNotIn("code_class", denominator)
        with open(os.path.join(REPO, "health", "stats_window.cc"), encoding="utf-8") as f:
            self.assertIn("s.errors = s.responses[5] + s.responses[0];", f.read())
        with open(os.path.join(REPO, "proxy", "metrics.cc"), encoding="utf-8") as f:
            self.assertIn('{"cut", "1xx", "2xx", "3xx", "4xx", "5xx"}', f.read())

    def test_guard_state_panel_maps_every_state(self):
        p = panel("Guard state by version")
        [t] = p["targets"]
        with open(os.path.join(REPO, "proxy", "metrics.h"), encoding="utf-8") as f:
            states = re.findall(r'"(\w+)"', re.search(r"kGuardStates\[\] = \{([^}]*)\}",
                                                       f.read()).group(1))
        self.assertEqual(states[0], "pass")
        codes = {s: 0 for s in states[:1]}
        for m in re.finditer(r'(?:(\d+) \* )?sum by \(instance, version\) '
                             r'\(weir_guard_state\{service="\$service",state="(\w+)"\}\)',
                             t["expr"]):
            codes[m.group(2)] = int(m.group(1) or 1)
        self.assertEqual(set(codes), set(states), "every state has a code (pass is 0)")
        [mapping] = p["fieldConfig"]["defaults"]["mappings"]
        self.assertEqual({int(k): v["text"] for k, v in mapping["options"].items()},
                         {code: s for s, code in codes.items()})

    def test_reverts_and_fleet_panels(self):
        [t] = panel("Guard reverts by version")["targets"]
        self.assertIn("increase(weir_reverts_total{", t["expr"])
        exprs = " ".join(t["expr"] for p in dashboard()["panels"]
                         if p["title"].startswith("Fleet:") for t in p["targets"])
        for metric in ("weir_fleet_store_up", "weir_fleet_is_leader",
                       "weir_fleet_applied_revision", "weir_fleet_replicas"):
            self.assertIn(metric, exprs)

    def test_panels_do_not_overlap(self):
        cells = set()
        for p in dashboard()["panels"]:
            g = p["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            self.assertFalse(cells & mine, p["title"])
            self.assertLessEqual(g["x"] + g["w"], 24)
            cells |= mine
        ids = [p["id"] for p in dashboard()["panels"]]
        self.assertEqual(len(ids), len(set(ids)))


class Tools(unittest.TestCase):
    def test_compose_config(self):
        tool = shutil.which("docker-compose")
        if not tool:
            self.skipTest("docker-compose is not installed (Debian package docker-compose; "
                          "scripts/setup.sh installs it)")
        for name in ("compose.yaml", "compose-fleet.yaml"):
            with self.subTest(name):
                run = subprocess.run([tool, "-f", os.path.join(DOCKER, name), "config", "-q"],
                                     capture_output=True, text=True, timeout=60, cwd=REPO,
                                     stdin=subprocess.DEVNULL)
                self.assertEqual(run.returncode, 0, run.stdout + run.stderr)

    def test_yamllint(self):
        """Plain `yamllint docker/` from the repository root passes: yamllint finds the
        repository's .yamllint (its default rules, 100 columns) by itself."""
        tool = shutil.which("yamllint")
        if not tool:
            self.skipTest("yamllint is not installed (Debian package yamllint; "
                          "scripts/setup.sh installs it)")
        files = glob.glob(os.path.join(DOCKER, "**", "*.y*ml"), recursive=True)
        self.assertGreaterEqual(len(files), 11)
        run = subprocess.run([tool, "-f", "parsable", "docker/"], capture_output=True,
                             text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        # It lints them all under the repository's rules (a line over 100 columns fails).
        with tempfile.TemporaryDirectory() as tmp:
            long = os.path.join(tmp, "long.yaml")
            with open(long, "w") as f:
                f.write("key: " + "x" * 100 + "\n")
            run = subprocess.run([tool, "-c", os.path.join(REPO, ".yamllint"), long],
                                 capture_output=True, text=True, timeout=60,
                                 stdin=subprocess.DEVNULL)
            self.assertNotEqual(run.returncode, 0, "the .yamllint allows over 100 columns")

if __name__ == "__main__":
    unittest.main()
