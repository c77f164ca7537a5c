"""Checks the Helm chart and the compose file of issue 19; exits non-zero naming each problem.

  python check.py   (with the virtualenv of requirements.txt; .ci/install-deps makes it)

1. `helm lint --strict` through Helm's own SDK (helm-python-sdk binds libhelm_c, Helm v4).
2. The chart rendered by Helm's template engine, with its own Secret and with an existing
   one plus a database CA, then every object validated strictly (unknown fields are errors)
   against the Kubernetes schemas of the oldest (1.25, the chart's kubeVersion) and newest
   (1.37) versions kubernetes-validate bundles.
3. What issue 19 asks of the objects: N replicas, probes on /readyz and /healthz, requests,
   a PodDisruptionBudget, a Secret with the enroll secret and the database URL, a read-only
   root filesystem and a non-root user matching the Containerfile's USER.
4. Rendering without a database URL fails and says which value is missing.
5. docker-compose.yml: the collector built from the Containerfile, read-only, on PostgreSQL
   that must be healthy first, with the same health check path.
"""

import re
import sys
from pathlib import Path

import helm_python
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "installer/helm/aiscout-collector"
KUBE_VERSIONS = ["1.25.0", "1.37.0"]
VALUES = {
    "replicaCount": 3,
    "secret": {
        "databaseUrl": "postgres://aiscout:pw@db.example/aiscout?sslmode=verify-full",
        "enrollSecret": "x" * 44,
        "tlsCrt": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
        "tlsKey": "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n",
        "identityKey": "ab" * 32,
    },
}
EXISTING = {"secret": {"existingSecret": "aiscout-prod"}, "databaseCaSecret": "db-ca"}

problems = []


def expect(ok, what):
    if not ok:
        problems.append(what)


def objects(values):
    chart = helm_python.Chart.load(str(CHART))
    rendered = chart.render(values, name="scout", namespace="aiscout", is_install=True)
    docs = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


def containerfile_user():
    text = (ROOT / "installer/container/Containerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    return users[-1].split(":")[0] if users else None


def check_chart():
    report = helm_python.lint(str(CHART), VALUES, strict=True)
    for m in report.get("messages", []):
        # Severity 1 is information (such as "icon is recommended"); 2 and 3 fail.
        if m.get("severity", 0) >= 2:
            problems.append(f"helm lint: {m.get('path')}: {m.get('error')}")
    for e in report.get("errors") or []:
        problems.append(f"helm lint: {e}")

    for label, values in [("own secret", VALUES), ("existing secret", EXISTING)]:
        docs = objects(values)
        for path, doc in docs:
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{label}: {path}: Kubernetes {version}: {e.message}")
                except Exception as e:  # an unknown kind or version: also a failure
                    problems.append(f"{label}: {path}: Kubernetes {version}: {e}")
        by_kind = {}
        for _, doc in docs:
            by_kind.setdefault(doc["kind"], []).append(doc)
        expect(
            sorted(by_kind) == (["Deployment", "PodDisruptionBudget", "Secret", "Service"]
                                if values is VALUES else
                                ["Deployment", "PodDisruptionBudget", "Service"]),
            f"{label}: kinds {sorted(by_kind)}",
        )
        dep = by_kind["Deployment"][0]
        expect(dep["spec"]["replicas"] == (3 if values is VALUES else 3), f"{label}: replicas")
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        expect(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe on /readyz")
        expect(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe on /healthz")
        for probe in ("readinessProbe", "livenessProbe"):
            expect(c[probe]["httpGet"]["scheme"] == "HTTPS", f"{probe} over HTTPS")
        expect({"cpu", "memory"} <= set(c["resources"]["requests"]), "cpu and memory requests")
        sc = c["securityContext"]
        expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
        expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
        expect(pod["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot")
        expect(
            str(pod["securityContext"].get("runAsUser")) == containerfile_user(),
            f"runAsUser {pod['securityContext'].get('runAsUser')} is the Containerfile's USER "
            f"{containerfile_user()}",
        )
        env = {e["name"]: e for e in c["env"]}
        secret_name = "aiscout-prod" if values is EXISTING else "scout-aiscout-collector"
        db = env["AISCOUT_DB"]["valueFrom"]["secretKeyRef"]
        expect(db == {"name": secret_name, "key": "database-url"}, f"{label}: AISCOUT_DB {db}")
        vols = {v["name"]: v for v in pod["volumes"]}
        expect(vols["secret"]["secret"]["secretName"] == secret_name, f"{label}: secret volume")
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        expect(env["AISCOUT_DATA_DIR"]["value"] in mounts, "the data folder is a volume")
        expect(("/etc/aiscout/db-ca" in mounts) == (values is EXISTING), f"{label}: db CA mount")
        pdb = by_kind["PodDisruptionBudget"][0]["spec"]
        expect(pdb["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"],
               "the PodDisruptionBudget selects the collectors")
        svc = by_kind["Service"][0]["spec"]
        expect(svc["selector"] == dep["spec"]["selector"]["matchLabels"],
               "the Service selects the collectors")
        if values is VALUES:
            keys = set(by_kind["Secret"][0]["stringData"])
            expect(keys == {"database-url", "enroll-secret", "identity-key", "tls.crt", "tls.key"},
                   f"secret keys {sorted(keys)}")

    try:
        objects({"secret": {"enrollSecret": "x" * 44}})
        problems.append("rendering without a database URL succeeded")
    except Exception as e:
        expect("secret.databaseUrl" in str(e), f"missing-URL error names the value: {e}")


def check_compose():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    expect(set(services) == {"postgres", "collector"}, f"compose services {sorted(services)}")
    col, pg = services["collector"], services["postgres"]
    expect(col["build"]["dockerfile"] == "installer/container/Containerfile",
           "compose builds the Containerfile")
    expect(col.get("read_only") is True, "compose: read-only root filesystem")
    expect(col["depends_on"]["postgres"]["condition"] == "service_healthy",
           "compose: the collector waits for a healthy PostgreSQL")
    expect(any("pg_isready" in str(part) for part in pg["healthcheck"]["test"]),
           "compose: PostgreSQL health check")
    expect(col["environment"]["AISCOUT_DB"].startswith("postgres://"), "compose: AISCOUT_DB")
    expect(any("/healthz" in str(part) for part in col["healthcheck"]["test"]),
           "compose: collector health check on /healthz")


check_chart()
check_compose()
for p in problems:
    print(f"problem: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print("chart and compose file: ok")
