"""A realistic small SaaS account for config-backup tests and the drill: the fake DO API's inventory
(two domains, apps, firewalls, a load balancer, droplets, volumes, reserved IPs, VPCs, a database
cluster, projects) and the fake web's repository and Grafana."""

from __future__ import annotations

import uuid
from typing import Any

from .fakedo import FakeDO
from .fakeweb import FakeWeb, Repo

DB_PASSWORD = "AVNS_fake-cluster-password-0001"


def populate_do(fake: FakeDO, *, droplets: int = 24, extra_records: int = 40) -> None:
    fake.add_domain("example.net")
    fake.add_record("example.net", "A", "erp", "203.0.113.10", 300)
    fake.add_record("example.net", "A", "www", "203.0.113.11", 3600)
    fake.add_record("example.net", "CNAME", "superset", "bi.example.net.", 3600)
    fake.add_record("example.net", "MX", "@", "mail.example.net", 3600, priority=10)
    fake.add_record("example.net", "TXT", "@", "v=spf1 include:_spf.example.net -all", 3600)
    fake.add_record("example.net", "CAA", "@", "letsencrypt.org", 3600, flags=0, tag="issue")
    fake.add_record("example.net", "SRV", "_sip._tcp", "sip.example.net", 3600, priority=10, weight=5, port=5060)
    fake.add_domain("example-status.com")
    for n in range(extra_records):
        fake.add_record("example-status.com", "A", f"node{n:02d}", f"198.51.100.{n + 1}", 1800)
    vpc = str(uuid.uuid4())
    fake.inventory["vpcs"] = [{"id": vpc, "name": "prod-fra1", "region": "fra1", "ip_range": "10.110.0.0/20",
                               "urn": f"do:vpc:{vpc}", "default": False, "created_at": "2025-01-10T10:00:00Z"}]
    for n in range(droplets):
        d = fake.add_droplet(f"web-{n:02d}" if n else "erp", ["prod", "dr:snapshot"] if n == 0 else ["prod"])
        d.update({"memory": 4096, "vcpus": 2, "disk": 80, "snapshot_ids": [n], "backup_ids": [],
                  "networks": {"v4": [{"ip_address": f"203.0.113.{100 + n}", "type": "public"}]}})
    fake.add_volume("erp-data", ["prod"])
    fake.add_volume("pg-wal", ["prod"])
    erp = next(iter(fake.droplet_objs.values()))
    fake.reserved_ips["203.0.113.50"] = {"ip": "203.0.113.50", "region": {"slug": "fra1"},
                                         "droplet": {"id": erp["id"], "name": "erp", "status": "active"},
                                         "locked": False, "project_id": None}
    fake.droplets.add(erp["id"])
    fw = str(uuid.uuid4())
    fake.inventory["firewalls"] = [
        {"id": fw, "name": "web", "status": "succeeded", "created_at": "2025-01-10T10:00:00Z", "pending_changes": [],
         "droplet_ids": [erp["id"]], "tags": ["prod"],
         "inbound_rules": [{"protocol": "tcp", "ports": "443", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}},
                           {"protocol": "tcp", "ports": "22", "sources": {"addresses": ["198.51.100.7/32"]}}],
         "outbound_rules": [{"protocol": "tcp", "ports": "all", "destinations": {"addresses": ["0.0.0.0/0"]}}]},
        {"id": str(uuid.uuid4()), "name": "db", "status": "succeeded", "created_at": "2025-01-10T10:00:00Z",
         "pending_changes": [], "droplet_ids": [], "tags": ["db"],
         "inbound_rules": [{"protocol": "tcp", "ports": "5432", "sources": {"tags": ["prod"]}}],
         "outbound_rules": []}]
    lb = str(uuid.uuid4())
    fake.inventory["load_balancers"] = [{"id": lb, "name": "erp-lb", "status": "active", "region": {"slug": "fra1"},
                                         "forwarding_rules": [{"entry_protocol": "https", "entry_port": 443,
                                                               "target_protocol": "http", "target_port": 8069}],
                                         "droplet_ids": [erp["id"]], "vpc_uuid": vpc}]
    fake.inventory["apps"] = [
        {"id": str(uuid.uuid4()), "spec": {"name": "superset", "region": "fra", "services": [
            {"name": "web", "image": {"registry_type": "DOCR", "repository": "superset", "tag": "4.1"},
             "envs": [{"key": "SUPERSET_SECRET_KEY", "type": "SECRET", "value": "EV[1:abc:def]"},
                      {"key": "DATABASE_HOST", "value": "db.example.net"}]}]},
         "default_ingress": "https://superset-abc.ondigitalocean.app", "region": {"slug": "fra"},
         "created_at": "2025-02-01T09:00:00Z", "updated_at": "2026-11-20T09:00:00Z",
         "active_deployment": {"id": "dep-1", "phase": "ACTIVE"}},
        {"id": str(uuid.uuid4()), "spec": {"name": "status-page", "static_sites": [{"name": "site"}]},
         "region": {"slug": "ams"}, "created_at": "2025-03-01T09:00:00Z"}]
    cluster = str(uuid.uuid4())
    fake.databases = [{"id": cluster, "name": "supabase-mirror", "engine": "pg", "version": "16", "num_nodes": 1,
                       "size": "db-s-2vcpu-4gb", "region": "fra1", "status": "online",
                       "connection": {"uri": f"postgresql://doadmin:{DB_PASSWORD}@db-host:25060/defaultdb?sslmode=require",
                                      "database": "defaultdb", "host": "db-host", "port": 25060, "user": "doadmin",
                                      "password": DB_PASSWORD, "ssl": True},
                       "users": [{"name": "doadmin", "role": "primary", "password": DB_PASSWORD}],
                       "maintenance_window": {"day": "sunday", "hour": "03:00:00"}, "tags": ["prod"]}]
    fake.database_configs[cluster] = {"max_connections": 100, "work_mem": 8}
    fake.database_rules[cluster] = [{"uuid": str(uuid.uuid4()), "cluster_uuid": cluster, "type": "tag", "value": "prod"}]
    project = str(uuid.uuid4())
    fake.inventory["projects"] = [{"id": project, "name": "production", "purpose": "Web Application",
                                   "environment": "Production", "is_default": True}]
    fake.project_resources[project] = [{"urn": f"do:droplet:{d}", "status": "ok"} for d in sorted(fake.droplet_objs)]


def populate_web(web: FakeWeb) -> None:
    web.repos["acme/infra"] = Repo(
        files={"README.md": b"# infra\n", "terraform/main.tf": b'resource "digitalocean_droplet" "erp" {}\n',
               "compose/odoo.yml": b"services:\n  odoo:\n    image: odoo:17\n",
               "addons/acme_sale/__manifest__.py": b"{'name': 'ACME sale'}\n",
               "scripts/restore.sh": b"#!/bin/sh\necho restore\n"},
        symlinks={"docs": "README.md"}, executables={"scripts/restore.sh"})
    web.dashboards = {"ops-overview": {"uid": "ops-overview", "title": "Ops overview", "panels": [{"id": 1}]},
                      "odoo": {"uid": "odoo", "title": "Odoo", "panels": []}}
    web.datasources = [{"uid": "prom", "name": "Prometheus", "type": "prometheus", "url": "http://prometheus:9090",
                        "basicAuthPassword": "legacy-grafana-password"}]
    web.alert_rules = [{"uid": "r1", "title": "PrimarySiteDown", "condition": "A"}]
    web.files["rules.yml"] = b"groups:\n- name: dr\n  rules:\n  - alert: PrimarySiteDown\n    expr: up == 0\n"


def sources(web: FakeWeb, tf_bucket: str, **extra: Any) -> list[dict[str, Any]]:
    """DRKIT_CONFIG_SOURCES for the sample account (tokens in DRKIT_GITHUB_TOKEN / DRKIT_GRAFANA_TOKEN)."""
    return [{"type": "digitalocean"},
            {"type": "github", "name": "infra", "repo": "acme/infra", "ref": "main", "api_url": web.url},
            {"type": "s3", "name": "tfstate", "bucket": tf_bucket, "prefix": "prod/"},
            {"type": "grafana", "name": "grafana", "url": web.url},
            {"type": "http", "name": "prometheus", "url": f"{web.url}/files/rules.yml"}]
