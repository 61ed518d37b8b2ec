"""Static checks of the Docker Compose environment in compose/ (no Docker engine needed).

Build machines have no Docker engine, so the compose files are checked by reading them: they
parse, every service / volume / mounted file / Dockerfile they name exists, images are
pinned, profiles and host ports are sane, the pglane configs pass `pglane --check-config`,
the pglane service publishes exactly the ports its config listens on (auto, rw, ro, metrics)
and mounts the users file its auth section names, built-in failover is on in pglane.json and
off in pglane-patroni.json (Patroni promotes there), the containers run the same scripts as
compose/local-cluster, and the monitoring files
(Prometheus, Grafana) point at pglane and use only metric names pglane exports.

    /usr/bin/python3 -m unittest discover -s tests/integration -t tests/integration \
        -p 'test_compose_static.py' -v

Needs python3-yaml (Debian) and, for the --check-config test, build/pglane (or
PGLANE_BINARY).
"""

import json
import os
import re
import subprocess
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE = os.path.join(ROOT, "compose")
MAIN_FILE = "docker-compose.yml"
PATRONI_FILE = "docker-compose.patroni.yml"
COMPOSE_FILES = (MAIN_FILE, PATRONI_FILE)
BINARY = os.environ.get("PGLANE_BINARY", os.path.join(ROOT, "build", "pglane"))

PRIMARY_SERVICE = "pg-n0"
STANDBY_SERVICES = ("pg-n1", "pg-n2")
PG_SERVICES = (PRIMARY_SERVICE,) + STANDBY_SERVICES
PATRONI_SERVICES = ("patroni-n0", "patroni-n1", "patroni-n2")
# The only profile, and the only services that belong to it.
MONITORING_SERVICES = {MAIN_FILE: {"prometheus", "grafana"}, PATRONI_FILE: set()}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(text):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and $$ as the defaults give them."""
    text = INTERPOLATION.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), str(text))
    return text.replace("$$", "$")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_compose(name):
    return load_yaml(os.path.join(COMPOSE, name))


def services(doc):
    return doc.get("services") or {}


def depends_on(service):
    """{name: condition} for both the list and the mapping form."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def volume_entries(service):
    """(type, source, target) per entry, short ("src:dst[:mode]") or long syntax."""
    out = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            if len(parts) == 1:
                out.append(("volume", None, parts[0]))
                continue
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            out.append((kind, source, target))
        else:
            out.append((entry.get("type", "volume"), entry.get("source"), entry.get("target")))
    return out


def bind_mounts(service):
    """{container path: host path (absolute)} of a service's bind mounts."""
    return {target: os.path.normpath(os.path.join(COMPOSE, source))
            for kind, source, target in volume_entries(service) if kind == "bind"}


def host_ports(service):
    """[(host port, container port)] for the published ports of a service."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((int(interpolate(entry["published"])), int(entry["target"])))
            continue
        parts = interpolate(entry).split("/")[0].split(":")
        if len(parts) == 1:
            continue  # container port only: Docker picks a free host port
        out.append((int(parts[-2]), int(parts[-1])))
    return out


def dockerfile_path(service):
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = os.path.normpath(os.path.join(COMPOSE, build.get("context", ".")))
    return context, os.path.join(context, build.get("dockerfile", "Dockerfile"))


def dockerfile_stages(path):
    """[(from image, [instruction lines])] per stage, with line continuations joined."""
    stages = []
    text = re.sub(r"\\\n", " ", read(path))
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word = line.split(None, 1)[0].upper()
        if word == "FROM":
            stages.append((line.split()[1], []))
        elif stages:
            stages[-1][1].append(line)
    return stages


def image_is_pinned(image):
    """A tag that is not `latest` and names a version (has a digit); or a digest."""
    if "@sha256:" in image:
        return True
    name_and_tag = image.rsplit("/", 1)[-1]
    if ":" not in name_and_tag:
        return False
    tag = name_and_tag.rsplit(":", 1)[1]
    return tag != "latest" and any(ch.isdigit() for ch in tag)


def exported_metric_names():
    """Every metric name pglane's /metrics emits, read from its sources."""
    status = read(os.path.join(ROOT, "proxy", "status.cpp"))
    counters = read(os.path.join(ROOT, "proxy", "counters.hpp"))
    names = set()
    gauges = re.search(r"node_gauges\[\]\s*=\s*\{(.*?)\n\};", status, re.S)
    if gauges:
        names.update(re.findall(r'\{\s*"([a-z0-9_]+)"\s*,', gauges.group(1)))
    names.update(re.findall(r'header\(\s*out\s*,\s*"([a-z0-9_]+)"', status))
    names.update(re.findall(r'\bX\(\s*([a-z0-9_]+)\s*,\s*"(?:counter|gauge)"', counters))
    return {"pglane_" + n for n in names}


# PromQL words that are not metric names (functions, aggregations, keywords).
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "rate", "irate", "increase", "delta", "idelta",
    "changes", "resets", "deriv", "abs", "ceil", "floor", "round", "clamp", "clamp_min",
    "clamp_max", "time", "timestamp", "vector", "scalar", "sort", "sort_desc", "absent",
    "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "count_over_time",
    "last_over_time", "histogram_quantile", "label_replace", "label_join", "inf", "nan",
}


def promql_metric_names(expr):
    """Identifiers of an expression that can only be metric names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)          # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)                    # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)                   # ranges [5m], [$__range]
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?[A-Za-z_]+\}?", " ", text)            # Grafana variables
    words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def dashboard_targets(dashboard):
    """(panel title, expr) for every query of every panel, rows' nested panels included."""
    out = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    out.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels") or [])

    walk(dashboard.get("panels") or [])
    return out


def pglane_config_for(compose_name):
    """(host path, parsed JSON) of the config the pglane service of a compose file mounts."""
    mounts = bind_mounts(services(load_compose(compose_name))["pglane"])
    path = mounts["/etc/pglane/pglane.json"]
    with open(path, encoding="utf-8") as f:
        return path, json.load(f)


def listen_port(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


def pg_options(command):
    """{name: value} of the `-c name=value` options of a postgres command list."""
    options = {}
    for flag, value in zip(command, command[1:]):
        if flag == "-c":
            name, _, setting = value.partition("=")
            options[name] = setting
    return options


class ComposeFiles(unittest.TestCase):
    def setUp(self):
        self.docs = {name: load_compose(name) for name in COMPOSE_FILES}

    def test_every_compose_yaml_parses_and_has_services(self):
        names = sorted(n for n in os.listdir(COMPOSE) if n.endswith((".yml", ".yaml")))
        self.assertEqual(sorted(COMPOSE_FILES), [n for n in names if n.startswith("docker-compose")])
        for name, doc in self.docs.items():
            with self.subTest(file=name):
                self.assertIsInstance(doc, dict)
                self.assertTrue(services(doc), f"{name} declares no services")
                self.assertTrue(doc.get("name"), f"{name}: give the project a name (separate volumes)")
        self.assertEqual(len({doc["name"] for doc in self.docs.values()}), len(self.docs),
                         "the compose files must be distinct projects")

    def test_depends_on_names_existing_services_with_valid_conditions(self):
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                for dep, condition in depends_on(svc).items():
                    with self.subTest(file=name, service=svc_name, depends_on=dep):
                        self.assertIn(dep, services(doc), f"{svc_name} depends on unknown service {dep}")
                        self.assertIn(condition, DEPENDS_CONDITIONS)
                        if condition == "service_healthy":
                            self.assertTrue(self._has_healthcheck(services(doc)[dep]),
                                            f"{dep} has no healthcheck for service_healthy")

    def _has_healthcheck(self, svc):
        if svc.get("healthcheck", {}).get("test"):
            return not svc["healthcheck"].get("disable", False)
        if "build" in svc:
            _, dockerfile = dockerfile_path(svc)
            return any(line.upper().startswith("HEALTHCHECK CMD") or
                       (line.upper().startswith("HEALTHCHECK") and "CMD" in line)
                       for _, lines in dockerfile_stages(dockerfile)[-1:] for line in lines)
        return False

    def test_startup_order(self):
        main = services(self.docs[MAIN_FILE])
        for standby in STANDBY_SERVICES:
            self.assertEqual(depends_on(main[standby]).get(PRIMARY_SERVICE), "service_healthy", standby)
        for node in PG_SERVICES:
            self.assertEqual(depends_on(main["pglane"]).get(node), "service_healthy", f"pglane -> {node}")
            test = main[node]["healthcheck"]["test"]
            self.assertIn("pg_isready", " ".join(test), f"{node} healthcheck")
        patroni = services(self.docs[PATRONI_FILE])
        for node in PATRONI_SERVICES:
            self.assertEqual(depends_on(patroni[node]).get("etcd"), "service_healthy", node)
            self.assertEqual(depends_on(patroni["pglane"]).get(node), "service_healthy", f"pglane -> {node}")

    def test_named_volumes_are_declared_and_used(self):
        for name, doc in self.docs.items():
            declared = set((doc.get("volumes") or {}).keys())
            used = set()
            for svc_name, svc in services(doc).items():
                for kind, source, target in volume_entries(svc):
                    if kind == "volume" and source:
                        used.add(source)
                        with self.subTest(file=name, service=svc_name, volume=source):
                            self.assertIn(source, declared, f"{svc_name} uses undeclared volume {source}")
            self.assertEqual(declared - used, set(), f"{name}: declared but unused volumes")

    def test_bind_mounted_host_paths_exist(self):
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                for target, host in bind_mounts(svc).items():
                    with self.subTest(file=name, service=svc_name, mount=target):
                        self.assertTrue(os.path.exists(host), f"{svc_name} mounts missing {host}")
                        self.assertTrue(host.startswith(COMPOSE + os.sep), f"{host} is outside compose/")

    def test_build_contexts_and_dockerfiles_exist(self):
        builds = 0
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                if "build" not in svc:
                    self.assertIn("image", svc, f"{svc_name}: neither image nor build")
                    continue
                builds += 1
                context, dockerfile = dockerfile_path(svc)
                with self.subTest(file=name, service=svc_name):
                    self.assertTrue(os.path.isdir(context), context)
                    self.assertTrue(os.path.isfile(dockerfile), dockerfile)
        self.assertGreaterEqual(builds, 5)  # pglane twice, three Patroni nodes

    def test_dockerfile_copy_sources_exist_in_their_context(self):
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                if "build" not in svc:
                    continue
                context, dockerfile = dockerfile_path(svc)
                for _, lines in dockerfile_stages(dockerfile):
                    for line in lines:
                        words = line.split()
                        if words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
                            continue
                        for source in [w for w in words[1:-1] if not w.startswith("--")]:
                            with self.subTest(dockerfile=dockerfile, source=source):
                                self.assertTrue(os.path.exists(os.path.join(context, source)),
                                                f"COPY {source}: not in the build context {context}")

    def test_entrypoint_shell_scripts_parse(self):
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                entrypoint = svc.get("entrypoint")
                if not (isinstance(entrypoint, list) and entrypoint[:2] == ["/bin/sh", "-c"]):
                    continue
                with self.subTest(file=name, service=svc_name):
                    script = entrypoint[2].replace("$$", "$")
                    self.assertNotRegex(entrypoint[2], r"(?<!\$)\$(?!\$)\{?[A-Za-z_@]",
                                        "a single $ is interpolated by compose: write $$")
                    result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertIn('exec docker-entrypoint.sh "$@"', script)

    def test_images_are_pinned(self):
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                if "image" in svc:
                    with self.subTest(file=name, service=svc_name, image=svc["image"]):
                        self.assertTrue(image_is_pinned(svc["image"]), f"{svc['image']} is not pinned")
                if "build" in svc:
                    _, dockerfile = dockerfile_path(svc)
                    stage_names = {m.lower() for m in re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", read(dockerfile), re.M | re.I)}
                    for base, _ in dockerfile_stages(dockerfile):
                        if base.lower() in stage_names:
                            continue
                        with self.subTest(dockerfile=dockerfile, base=base):
                            self.assertTrue(image_is_pinned(base), f"FROM {base} is not pinned")

    def test_postgres_images_are_one_major_version(self):
        main = services(self.docs[MAIN_FILE])
        images = {main[n]["image"] for n in PG_SERVICES}
        self.assertEqual(len(images), 1, images)
        self.assertRegex(images.pop(), r"^postgres:15\.\d+")

    def test_profiles(self):
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                with self.subTest(file=name, service=svc_name):
                    profiles = svc.get("profiles") or []
                    if svc_name in MONITORING_SERVICES[name]:
                        self.assertEqual(profiles, ["monitoring"])
                    else:
                        self.assertEqual(profiles, [], f"{svc_name} must start without a profile")
        main = services(self.docs[MAIN_FILE])
        self.assertTrue(MONITORING_SERVICES[MAIN_FILE] <= set(main))

    def test_host_ports_do_not_collide(self):
        seen = {}
        for name, doc in self.docs.items():
            for svc_name, svc in services(doc).items():
                for host, _ in host_ports(svc):
                    with self.subTest(file=name, service=svc_name, port=host):
                        self.assertNotIn(host, seen, f"host port {host} also used by {seen.get(host)}")
                        self.assertTrue(1 <= host <= 65535)
                    seen[host] = f"{name}:{svc_name}"

    def test_pglane_publishes_its_configured_ports(self):
        for name in COMPOSE_FILES:
            with self.subTest(file=name):
                _, config = pglane_config_for(name)
                svc = services(self.docs[name])["pglane"]
                published = {container for _, container in host_ports(svc)}
                wanted = {listen_port(v) for v in config["listen"].values()}
                wanted.add(listen_port(config["metrics_listen"]))
                self.assertEqual(published, wanted)
                for endpoint in list(config["listen"].values()) + [config["metrics_listen"]]:
                    self.assertTrue(endpoint.startswith("0.0.0.0:"),
                                    f"{endpoint}: a container must listen on all interfaces")

    def test_pglane_listens_on_auto_rw_and_ro(self):
        for name in COMPOSE_FILES:
            with self.subTest(file=name):
                _, config = pglane_config_for(name)
                self.assertEqual(set(config["listen"]), {"auto", "rw", "ro"})
                self.assertEqual(listen_port(config["listen"]["auto"]), 6432)
                self.assertIn("auth", config, "listen.auto requires an auth section")

    def test_pglane_users_file_is_mounted_where_the_config_reads_it(self):
        for name in COMPOSE_FILES:
            with self.subTest(file=name):
                _, config = pglane_config_for(name)
                auth = config["auth"]
                if not auth.get("users_file"):
                    self.assertIn("$1", auth["query"])
                    self.assertTrue(auth.get("query_user"))
                    continue
                mounts = bind_mounts(services(self.docs[name])["pglane"])
                self.assertIn(auth["users_file"], mounts, f"{auth['users_file']} is not mounted into pglane")
                host = mounts[auth["users_file"]]
                self.assertTrue(os.path.isfile(host), host)
                entries = [line.strip() for line in read(host).splitlines()
                           if line.strip() and not line.lstrip().startswith((";", "#"))]
                users = {}
                for line in entries:
                    m = re.match(r'^"((?:[^"]|"")*)"\s+"((?:[^"]|"")*)"', line)
                    self.assertIsNotNone(m, f"{host}: not a \"user\" \"secret\" line: {line}")
                    users[m.group(1)] = m.group(2)
                # The dev superuser, with the compose default password, as the health probes use.
                self.assertEqual(users.get(config["health"]["user"]), config["health"]["password"])
                self.assertEqual(config["health"]["password"], "postgres")
                self.assertIn("PGLANE_SUPERUSER_PASSWORD:-postgres", read(os.path.join(COMPOSE, name)))

    def test_failover_on_in_pglane_json_and_off_with_patroni(self):
        _, main = pglane_config_for(MAIN_FILE)
        self.assertIs(main["failover"]["enabled"], True)
        self.assertEqual(main["failover"]["after_ms"], 5000)
        self.assertEqual(main["failover"]["hold_ms"], 30000)
        _, patroni = pglane_config_for(PATRONI_FILE)
        self.assertIs(patroni.get("failover", {}).get("enabled", False), False,
                      "Patroni promotes: pglane must only follow")

    def test_pglane_nodes_are_the_compose_services(self):
        for name, nodes in ((MAIN_FILE, PG_SERVICES), (PATRONI_FILE, PATRONI_SERVICES)):
            with self.subTest(file=name):
                _, config = pglane_config_for(name)
                self.assertEqual([n["host"] for n in config["nodes"]], list(nodes))
                for node in config["nodes"]:
                    self.assertEqual(node["port"], 5432)
                    self.assertEqual(node["name"], node["host"].rsplit("-", 1)[1])

    def test_pglane_configs_pass_check_config(self):
        if not os.access(BINARY, os.X_OK):
            self.skipTest(f"no pglane binary at {BINARY} (build it or set PGLANE_BINARY)")
        for name in COMPOSE_FILES:
            path, _ = pglane_config_for(name)
            with self.subTest(config=path):
                result = subprocess.run([BINARY, "--check-config", "--config", path],
                                        capture_output=True, text=True, timeout=30)
                detail = result.stdout + result.stderr
                if result.returncode < 0:
                    detail += f"{BINARY} was killed by signal {-result.returncode}"
                self.assertEqual(result.returncode, 0, detail)

    def test_pglane_service_mounts_config_where_the_image_reads_it(self):
        _, dockerfile = dockerfile_path(services(self.docs[MAIN_FILE])["pglane"])
        entrypoint = [line for _, lines in dockerfile_stages(dockerfile)[-1:]
                      for line in lines if line.upper().startswith("ENTRYPOINT")]
        self.assertEqual(len(entrypoint), 1)
        self.assertEqual(json.loads(entrypoint[0].split(None, 1)[1]),
                         ["pglane", "--config", "/etc/pglane/pglane.json"])
        for name in COMPOSE_FILES:
            svc = services(self.docs[name])["pglane"]
            self.assertIn("/etc/pglane/pglane.json", bind_mounts(svc))
            self.assertEqual(dockerfile_path(svc)[1], dockerfile)


class PostgresNodes(unittest.TestCase):
    def setUp(self):
        self.main = services(load_compose(MAIN_FILE))
        self.launcher = read(os.path.join(COMPOSE, "local-cluster"))

    def test_containers_run_the_launchers_scripts(self):
        primary_init = os.path.join(COMPOSE, "scripts", "primary-init.sh")
        bootstrap = os.path.join(COMPOSE, "scripts", "standby-bootstrap.sh")
        # The launcher runs these very files (from its snapshot of compose/scripts).
        self.assertIn("scripts/primary-init.sh", self.launcher)
        self.assertIn("scripts/standby-bootstrap.sh", self.launcher)
        self.assertIn('cp -R "$COMPOSE_DIR/config" "$COMPOSE_DIR/scripts"', self.launcher)

        mounts = bind_mounts(self.main[PRIMARY_SERVICE])
        initdb = {t: h for t, h in mounts.items() if t.startswith("/docker-entrypoint-initdb.d/")}
        self.assertEqual(list(initdb.values()), [primary_init])
        self.assertTrue(next(iter(initdb)).endswith(".sh"))
        # The image's entrypoint sources (in its own bash) what is not executable.
        self.assertTrue(os.access(primary_init, os.X_OK), "primary-init.sh must be executable")

        for standby in STANDBY_SERVICES:
            with self.subTest(service=standby):
                mounts = bind_mounts(self.main[standby])
                targets = [t for t, h in mounts.items() if h == bootstrap]
                self.assertEqual(len(targets), 1, f"{standby} must mount standby-bootstrap.sh")
                script = " ".join(self.main[standby]["entrypoint"])
                self.assertIn(targets[0], script, f"{standby} must run the mounted bootstrap script")
                self.assertIn("gosu postgres", script, "bootstrap must run as postgres")
                self.assertRegex(script, r"exec docker-entrypoint\.sh")
                self.assertEqual(self.main[standby]["command"][0], "postgres")
                self.assertNotIn("/docker-entrypoint-initdb.d/", " ".join(mounts))

    def test_environment_the_scripts_need(self):
        primary_env = self.main[PRIMARY_SERVICE]["environment"]
        for key in ("POSTGRES_PASSWORD", "REPLICATION_PASSWORD", "STANDBY_NAMES", "ARCHIVE_DIR"):
            self.assertIn(key, primary_env)
        self.assertIn(primary_env.get("PGUSER", primary_env.get("POSTGRES_USER")), ("postgres",))
        self.assertEqual(primary_env["STANDBY_NAMES"].split(), [s.split("-")[1] for s in STANDBY_SERVICES])
        for standby in STANDBY_SERVICES:
            env = self.main[standby]["environment"]
            with self.subTest(service=standby):
                for key in ("PGDATA", "NODE_NAME", "PRIMARY_HOST", "REPLICATION_PASSWORD", "ARCHIVE_DIR"):
                    self.assertIn(key, env)
                self.assertEqual(env["NODE_NAME"], standby.split("-")[1])
                self.assertEqual(env["PRIMARY_HOST"], PRIMARY_SERVICE)
                self.assertEqual(env["REPLICATION_PASSWORD"], primary_env["REPLICATION_PASSWORD"])
                self.assertEqual(env["ARCHIVE_DIR"], primary_env["ARCHIVE_DIR"])

    def test_archive_is_one_volume_on_every_node_outside_pgdata(self):
        archive_dir = self.main[PRIMARY_SERVICE]["environment"]["ARCHIVE_DIR"]
        sources = set()
        for node in PG_SERVICES:
            with self.subTest(service=node):
                entries = {target: (kind, source) for kind, source, target in volume_entries(self.main[node])}
                self.assertIn(archive_dir, entries, f"{node} does not mount the archive")
                kind, source = entries[archive_dir]
                self.assertEqual(kind, "volume")
                sources.add(source)
                pgdata = self.main[node]["environment"]["PGDATA"]
                self.assertIn(pgdata, entries)
                self.assertNotEqual(entries[pgdata][1], source)
                self.assertFalse(archive_dir.startswith(pgdata.rstrip("/") + "/"))
        self.assertEqual(len(sources), 1, f"one archive volume for all nodes, not {sources}")

    def test_server_options_as_the_launcher_gives_them(self):
        for node in PG_SERVICES:
            with self.subTest(service=node):
                svc = self.main[node]
                options = pg_options(svc["command"])
                mounts = bind_mounts(svc)
                self.assertEqual(mounts.get(options.get("config_file")),
                                 os.path.join(COMPOSE, "config", "postgresql.conf"))
                self.assertEqual(mounts.get(options.get("hba_file")),
                                 os.path.join(COMPOSE, "config", "pg_hba.conf"))
                self.assertEqual(options.get("cluster_name"), node.split("-")[1])
                self.assertEqual(options.get("port"), "5432")
                self.assertEqual(options.get("listen_addresses"), "*")
                for name in ("config_file", "hba_file", "port", "listen_addresses", "cluster_name"):
                    self.assertIn(f"-c {name}=", self.launcher, f"launcher no longer sets {name}")


class MonitoringFiles(unittest.TestCase):
    def setUp(self):
        self.main = services(load_compose(MAIN_FILE))
        _, self.config = pglane_config_for(MAIN_FILE)
        self.exported = exported_metric_names()

    def test_metric_names_are_found_in_the_sources(self):
        for name in ("pglane_node_up", "pglane_node_is_primary", "pglane_node_lag_bytes",
                     "pglane_node_lag_seconds", "pglane_node_held_back", "pglane_primary_term",
                     "pglane_sessions_routed_total", "pglane_client_connections_active"):
            self.assertIn(name, self.exported)

    def test_prometheus_scrapes_pglane_metrics_port(self):
        mounts = bind_mounts(self.main["prometheus"])
        command = " ".join(self.main["prometheus"].get("command") or [])
        config_in_container = re.search(r"--config\.file=(\S+)", command).group(1)
        prometheus = load_yaml(mounts[config_in_container])
        metrics_port = listen_port(self.config["metrics_listen"])
        targets = []
        for job in prometheus["scrape_configs"]:
            if job.get("metrics_path", "/metrics") != "/metrics":
                continue
            for static in job.get("static_configs") or []:
                targets.extend(static.get("targets") or [])
        self.assertIn(f"pglane:{metrics_port}", targets)
        for target in targets:
            self.assertIn(target.rsplit(":", 1)[0], self.main, f"scrape target {target} is no service")

    def test_grafana_provisioning(self):
        mounts = bind_mounts(self.main["grafana"])
        provisioning = mounts["/etc/grafana/provisioning"]
        datasources = load_yaml(os.path.join(provisioning, "datasources", "prometheus.yml"))
        urls = [d["url"] for d in datasources["datasources"] if d["type"] == "prometheus"]
        prometheus_port = 9090
        self.assertEqual(urls, [f"http://prometheus:{prometheus_port}"])
        self.assertIn(prometheus_port, [c for _, c in host_ports(self.main["prometheus"])])
        providers = load_yaml(os.path.join(provisioning, "dashboards", "pglane.yml"))["providers"]
        for provider in providers:
            self.assertIn(provider["options"]["path"], mounts, "dashboard path is not mounted")

    def test_dashboard_uses_only_exported_metrics(self):
        path = os.path.join(COMPOSE, "monitoring", "grafana", "dashboards", "pglane.json")
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
        targets = dashboard_targets(dashboard)
        self.assertTrue(targets)
        used = set()
        for title, expr in targets:
            with self.subTest(panel=title, expr=expr):
                names = promql_metric_names(expr)
                self.assertTrue(names, "expression names no metric")
                self.assertEqual(names - self.exported, set(), "not exported by pglane")
                used |= names
        # The panels the issue asks for: node roles, lag, held back, routing, connections, failovers.
        for name in ("pglane_node_is_primary", "pglane_node_up", "pglane_node_lag_bytes",
                     "pglane_node_lag_seconds", "pglane_node_held_back", "pglane_sessions_routed_total",
                     "pglane_client_connections_active", "pglane_primary_term"):
            self.assertIn(name, used)
        datasource_uids = {d.get("uid") for d in load_yaml(os.path.join(
            COMPOSE, "monitoring", "grafana", "provisioning", "datasources", "prometheus.yml"))["datasources"]}
        for panel in dashboard["panels"]:
            if panel.get("type") != "row":
                self.assertIn(panel["datasource"]["uid"], datasource_uids, panel["title"])


class Dockerfiles(unittest.TestCase):
    def test_pglane_runtime_stage_runs_as_non_root(self):
        stages = dockerfile_stages(os.path.join(COMPOSE, "Dockerfile"))
        self.assertGreaterEqual(len(stages), 2, "multi-stage: build and runtime")
        for base, _ in stages:
            self.assertRegex(base, r"^debian:12[.\d]*(-slim)?$|^debian:bookworm-\d{8}(-slim)?$")
        self.assert_last_user_not_root(stages[-1][1])
        runtime = " ".join(stages[-1][1])
        self.assertNotIn("-dev", runtime, "runtime stage installs no -dev package")
        for package in ("libpq5", "libssl3", "libfmt9"):
            self.assertIn(package, runtime)
        self.assertRegex(" ".join(stages[0][1]), r"-DPGLANE_TESTS=OFF")

    def test_patroni_image_runs_as_non_root(self):
        stages = dockerfile_stages(os.path.join(COMPOSE, "patroni", "Dockerfile"))
        self.assert_last_user_not_root(stages[-1][1])
        text = " ".join(stages[-1][1])
        for package in ("patroni", "postgresql-15"):
            self.assertRegex(text, rf"\b{package}\b")

    def assert_last_user_not_root(self, lines):
        users = [line.split(None, 1)[1].split(":")[0] for line in lines if line.upper().startswith("USER ")]
        self.assertTrue(users, "no USER in the final stage")
        self.assertNotIn(users[-1], ("root", "0"))

    def test_build_stage_copies_every_source_directory(self):
        cmake = read(os.path.join(ROOT, "CMakeLists.txt"))
        cmake = cmake.split("if(PGLANE_TESTS)")[0]  # tests are built with PGLANE_TESTS=OFF
        needed = set(re.findall(r"(?<![\w/${}])([a-z_]+)/[\w*.]+\.(?:cpp|in)\b", cmake))
        self.assertTrue(needed)
        build_stage = dockerfile_stages(os.path.join(COMPOSE, "Dockerfile"))[0][1]
        copied = {line.split()[1].rstrip("/") for line in build_stage if line.upper().startswith("COPY ")}
        self.assertIn("CMakeLists.txt", copied)
        self.assertEqual(needed - copied, set(), "directories the build needs but does not COPY")

    def test_dockerignore_keeps_sources_and_drops_build_trees(self):
        patterns = [line.strip() for line in read(os.path.join(ROOT, ".dockerignore")).splitlines()
                    if line.strip() and not line.startswith("#")]
        self.assertIn("build*", patterns)
        for needed in ("CMakeLists.txt", "common", "protocol", "routing", "health", "proxy", "compose"):
            self.assertNotIn(needed, patterns)


class PatroniFiles(unittest.TestCase):
    def setUp(self):
        self.doc = services(load_compose(PATRONI_FILE))
        self.patroni = load_yaml(os.path.join(COMPOSE, "patroni", "patroni.yml"))

    def test_patroni_settings(self):
        dcs = self.patroni["bootstrap"]["dcs"]
        self.assertIs(dcs["synchronous_mode"], True)
        self.assertEqual(dcs["synchronous_node_count"], 1)
        self.assertIs(dcs["postgresql"]["use_slots"], True)
        self.assertIs(dcs["postgresql"]["use_pg_rewind"], True)
        parameters = dcs["postgresql"]["parameters"]
        self.assertEqual(str(parameters["archive_mode"]), "on")
        self.assertIn("/var/lib/postgresql/archive/%f", parameters["archive_command"])
        self.assertIn("/var/lib/postgresql/archive/",
                      self.patroni["postgresql"]["recovery_conf"]["restore_command"])
        hosts = self.patroni["etcd3"]["hosts"]
        self.assertIn(hosts.split(":")[0], self.doc, "etcd host is no service")

    def test_patroni_nodes(self):
        for node in PATRONI_SERVICES:
            with self.subTest(service=node):
                env = self.doc[node]["environment"]
                self.assertEqual(env["PATRONI_NAME"], node.split("-")[1])
                self.assertEqual(env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"], f"{node}:5432")
                self.assertEqual(env["PATRONI_RESTAPI_CONNECT_ADDRESS"], f"{node}:8008")
                targets = {t: (k, s) for k, s, t in volume_entries(self.doc[node])}
                self.assertEqual(targets["/var/lib/postgresql/archive"], ("volume", "patroni-archive"))
                data_dir = self.patroni["postgresql"]["data_dir"]
                self.assertTrue(any(data_dir.startswith(t + "/") for t in targets),
                                "data_dir must be inside a mounted volume")


if __name__ == "__main__":
    unittest.main()
