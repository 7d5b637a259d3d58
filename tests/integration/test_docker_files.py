"""docker/: what can be checked without a container engine (scripts/container-check.sh builds and
runs the image with podman).

The Dockerfile builds with scripts/setup.sh --deps and runs weir as a non-root user with a
HEALTHCHECK; docker/weir.toml and the ConfigMap's weir.toml pass `weir --check`; the token
files hold the digests of the tokens they document; compose.yaml passes `docker-compose config`
and the YAML passes yamllint (each skipped, with the reason, when the tool is not installed).
Standard library only; no network, no containers; a few seconds in all.
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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(REPO, "docker")
WEIR_BIN = os.environ.get("WEIR_BIN", os.path.join(REPO, "build", "weir"))

RUNTIME_LIBS = ["libuv1", "libssl3", "libnghttp2-14", "libprometheus-cpp-core1.0",
                "libtomlplusplus3"]


def read(*parts):
    with open(os.path.join(DOCKER, *parts), encoding="utf-8") as f:
        return f.read()


def dockerfile_stages():
    """Dockerfile → [[(INSTRUCTION, args), ...] per stage], continuation lines joined."""
    stages, logical = [], ""
    for line in read("Dockerfile").split("\n"):
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


class Configs(unittest.TestCase):
    def check(self, text, tokens_text, name):
        """weir --check on text (with tokens_file pointed at tokens_text) in a temp dir."""
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "tokens.toml"), "w") as f:
                f.write(tokens_text)
            text = re.sub(r'(?m)^(\s*tokens_file\s*=\s*)"[^"]*"', r'\1"tokens.toml"', text)
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(text)
            run = run_check(path)
            self.assertEqual(run.returncode, 0, f"weir --check {name}:\n{run.stderr}")

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


class Tools(unittest.TestCase):
    def test_compose_config(self):
        tool = shutil.which("docker-compose")
        if not tool:
            self.skipTest("docker-compose is not installed (Debian package docker-compose; "
                          "scripts/setup.sh installs it)")
        run = subprocess.run([tool, "-f", os.path.join(DOCKER, "compose.yaml"), "config", "-q"],
                             capture_output=True, text=True, timeout=60, cwd=REPO,
                             stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)

    def test_yamllint(self):
        tool = shutil.which("yamllint")
        if not tool:
            self.skipTest("yamllint is not installed (Debian package yamllint; "
                          "scripts/setup.sh installs it)")
        files = sorted(glob.glob(os.path.join(DOCKER, "k8s", "*.yaml")) +
                       glob.glob(os.path.join(DOCKER, "grafana", "provisioning", "*", "*.yaml")) +
                       [os.path.join(DOCKER, "compose.yaml"),
                        os.path.join(DOCKER, "prometheus.yml")])
        self.assertGreaterEqual(len(files), 7)
        # The repository's .yamllint: yamllint's default rules, 100 columns.
        run = subprocess.run([tool, "-c", os.path.join(REPO, ".yamllint"), "-f", "parsable",
                              *files],
                             capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)


if __name__ == "__main__":
    unittest.main()
