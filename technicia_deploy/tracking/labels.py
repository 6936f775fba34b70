"""Every word of the tracking document, in French (the seed's) and English.

One table per language with the same keys: a key missing from one language is a
test failure, not a silently French word in the English document.
"""

from __future__ import annotations

from datetime import datetime, timezone

LANGS = ("fr", "en")

_FR = {
    "title": "Suivi de Déploiement TechnicIA MVP",
    "generated": "Document généré le {now} depuis l'historique des exécutions Prefect : ne pas le modifier à la main.",
    "global": "État Global du Déploiement",
    "last_update": "Date de dernière mise à jour",
    "overall": "État global",
    "current_env": "Environnement en cours",
    "next_step": "Prochaine étape",
    "environments": "Environnements",
    "server_config": "Configuration du Serveur OVH",
    "firewall": "Configuration du Firewall",
    "process": "Processus de Déploiement - Environnement de {env}",
    "api_keys": "Configuration des Clés API",
    "problems": "Problèmes Rencontrés",
    "maintenance": "Maintenance et Mises à Jour Planifiées",
    "notes": "Notes et Observations",
    # column headers
    "col_env": "Environnement", "col_status": "Statut", "col_url": "URL", "col_server": "Serveur",
    "col_version": "Version", "col_deployed_at": "Déployée le", "col_param": "Paramètre",
    "col_declared": "Déclaré", "col_ovh": "API OVH", "col_observed_server": "Serveur (relevé)", "col_check": "Écart",
    "col_port": "Port", "col_service": "Service", "col_exposure": "Exposition prévue",
    "col_observed": "Observé (dernier test de sécurité)", "col_comment": "Commentaire",
    "col_step": "Étape", "col_start": "Date début", "col_end": "Date fin", "col_owner": "Responsable",
    "col_comments": "Commentaires", "col_checked": "Vérifié le", "col_latency": "Latence",
    "col_fingerprint": "Empreinte de la clé", "col_id": "ID", "col_description": "Description",
    "col_identified": "Date identification", "col_resolved": "Date résolution", "col_solution": "Solution",
    "col_date": "Date", "col_type": "Type",
    # step / overall states
    "st_not_started": "Non commencé", "st_running": "En cours", "st_completed": "Complété", "st_blocked": "Bloqué",
    "st_planned": "Planifié",
    # environment states
    "env_not_deployed": "Non déployé", "env_deploying": "Déploiement en cours", "env_deployed": "Déployé",
    "env_failed": "Échec du déploiement",
    "env_rolled_back": "Retour à {release} ({failed} en échec)",
    "pb_rolled_back": "Retour automatique à {release}, vérifié par les tests fonctionnels",
    "env_test": "Test", "env_staging": "Staging", "env_production": "Production",
    # server parameters
    "p_model": "Modèle", "p_vcores": "CPU", "p_ram_gb": "RAM", "p_disk_gb": "Stockage", "p_os": "OS",
    "p_zone": "Localisation", "p_ip": "IP", "p_domain": "Nom de domaine",
    "unit_vcores": "{n} vCores", "unit_gb": "{n} GB",
    "same": "✓", "differs": "≠ écart", "not_observed": "non relevé",
    "server_not_observed": "Aucun relevé du serveur (artefact `{key}`) : seules les valeurs déclarées sont connues.",
    # firewall
    "exp_public": "Public", "exp_internal": "Interne uniquement", "exp_undeclared": "Non déclaré",
    "obs_open": "ouvert", "obs_closed": "fermé", "obs_filtered": "filtré", "obs_none": "non testé",
    "fw_mismatch": "⚠ écart",
    # process
    "run_line": "Dernière exécution : `{name}` · release {release} · {state} · opérateur {operator}",
    "no_run": "Aucun déploiement exécuté sur cet environnement.",
    "approved_by": "approuvé par {name}",
    "outcome_unchanged": "(inchangé)",
    "awaiting": "{state}",
    # api keys
    "svc_documentai": "Google Cloud (Document AI)", "svc_vision": "Google Cloud (Vision AI)",
    "svc_voyageai": "VoyageAI", "svc_anthropic": "Anthropic (Claude)",
    "key_not_checked": "Non vérifié", "key_ok": "Valide", "key_invalid": "Clé invalide",
    "key_forbidden": "Accès refusé", "key_rate_limited": "Limite de débit atteinte", "key_quota": "Quota dépassé",
    "key_unreachable": "Service injoignable", "key_transient": "Erreur passagère du service",
    "key_misconfigured": "Mal configuré", "key_error": "Erreur", "key_not_configured": "Non configuré",
    # problems
    "pb_open": "Ouvert", "pb_resolved": "Résolu", "pb_failures": "{n} échecs",
    "pb_resolved_by": "réussite de l'étape avec la release {release}",
    "pb_resolved_by_run": "réussite de l'étape (exécution {name})",
    "pb_none": "Aucun problème rencontré.",
    # maintenance
    "mt_none": "Aucune maintenance planifiée ou récente.", "mt_scheduler": "planificateur",
    "mt_scheduled": "Planifié", "mt_running": "En cours", "mt_done": "Complété", "mt_failed": "Échec",
    "mt_cancelled": "Annulé",
    "flow_smoke-api-keys": "Vérification des clés API", "flow_deploy-environment": "Déploiement",
    "flow_security-test": "Test de sécurité", "flow_renew-certificates": "Renouvellement des certificats",
    "flow_cost-monitoring": "Suivi des coûts",
    "flow_maintenance-certificates": "Certificats", "flow_maintenance-housekeeping": "Nettoyage Docker",
    "flow_maintenance-backup": "Sauvegarde", "flow_maintenance-restore-drill": "Exercice de restauration",
    "flow_maintenance-drift": "Contrôle de dérive",
    # what an upcoming run will do (a scheduled run has no description of its own yet, and a random name)
    "mt_what": "Exécution planifiée ({flow})",
    "mt_what_smoke-api-keys": "Appel de vérification de chaque clé API de chaque environnement",
    "mt_what_maintenance-certificates": "Vérifier le certificat servi (jours restants, chaîne, noms), le renouveler sous le seuil, tester le renouvellement (dry-run)",
    "mt_what_maintenance-housekeeping": "Supprimer les images et releases inutilisées, en gardant la release courante et la précédente",
    "mt_what_maintenance-backup": "Sauvegarder Qdrant (snapshots) et n8n hors du serveur, avec somme de contrôle et rétention",
    "mt_what_maintenance-restore-drill": "Restaurer la dernière sauvegarde de production dans test et la vérifier",
    "mt_what_maintenance-drift": "Comparer chaque serveur avec ce que le pipeline déclare (firewall, ports, release, .env, nginx, certificat, DNS, monitoring)",
    "env_all": "Tous",
    "note_drift_ok": "Contrôle de dérive de {env} ({when}) : le serveur est conforme à ce que le pipeline déclare.",
    "note_drift_bad": "Contrôle de dérive de {env} ({when}) : {detail}",
    # next step
    "next_deploy_env": "Déploiement sur environnement de {env}",
    "next_deploy_release": "Déploiement de la release {release} sur environnement de {env}",
    "next_running": "{step} ({env})",
    "next_fix": "Résoudre le problème {id} ({step}, {env}) puis relancer le déploiement",
    "next_none": "Aucune : toutes les releases sont déployées ; maintenance courante",
    # notes
    "ok": "✅", "warn": "⚠️",
    "note_quotas_ok": "Les quotas d'API des services cloud ont été vérifiés en production le {when} (tous les services répondent).",
    "note_quotas_bad": "Les quotas d'API des services cloud doivent être vérifiés avant la mise en production : {detail}.",
    "note_quotas_none": "aucune vérification des clés de production",
    "note_quotas_confirmed": "Quotas confirmés vérifiés lors de l'approbation de production ({who}, {when}).",
    "note_quotas_failing": "en échec : {services}",
    "note_dns_ok": "La configuration DNS de production date du {when}, soit {hours} h avant {ref} (≥ 24 h pour la propagation).",
    "note_dns_short": "La configuration DNS de production date du {when}, seulement {hours} h avant {ref} : il faut 24 h de propagation.",
    "note_dns_none": "La configuration DNS de production n'a pas encore été faite : elle doit précéder le déploiement de 24 h.",
    "ref_now": "maintenant", "ref_deploy": "le déploiement de production du {when}",
    "note_cost_ok": "Le suivi des coûts des services cloud est actif (déploiement `{name}`{last}).",
    "note_cost_last": ", dernière exécution : {state} le {when}",
    "note_cost_none": "Aucun suivi des coûts des services cloud n'est actif (aucun déploiement Prefect étiqueté `cost-monitoring` avec une planification active).",
    "note_docs_ok": "La documentation utilisateur a été confirmée finalisée lors de la dernière approbation de production ({who}, {when}).",
    "note_docs_bad": "La documentation utilisateur n'a pas été confirmée finalisée lors de la dernière approbation de production ({who}, {when}).",
    "note_docs_none": "Aucune approbation de production enregistrée : la documentation utilisateur doit être confirmée finalisée avant la mise en production.",
    "next_rerun": "Relancer le déploiement sur environnement de {env}",
    "server_of": "Serveur {env} ({label})",
    "fw_tested": "Dernier test de sécurité : {when}.",
    "fw_not_tested": "Aucun test de sécurité enregistré (artefact `{key}`).",
    "none": "-",
    "months": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
}

_EN = {
    "title": "TechnicIA MVP Deployment Tracking",
    "generated": "Generated on {now} from the Prefect run history: do not edit by hand.",
    "global": "Overall Deployment Status",
    "last_update": "Last updated",
    "overall": "Overall status",
    "current_env": "Current environment",
    "next_step": "Next step",
    "environments": "Environments",
    "server_config": "OVH Server Configuration",
    "firewall": "Firewall Configuration",
    "process": "Deployment Process - {env} Environment",
    "api_keys": "API Key Configuration",
    "problems": "Problems Encountered",
    "maintenance": "Scheduled Maintenance and Updates",
    "notes": "Notes and Observations",
    "col_env": "Environment", "col_status": "Status", "col_url": "URL", "col_server": "Server",
    "col_version": "Version", "col_deployed_at": "Deployed on", "col_param": "Parameter",
    "col_declared": "Declared", "col_ovh": "OVH API", "col_observed_server": "Server (observed)", "col_check": "Difference",
    "col_port": "Port", "col_service": "Service", "col_exposure": "Intended exposure",
    "col_observed": "Observed (last security test)", "col_comment": "Comment",
    "col_step": "Step", "col_start": "Start date", "col_end": "End date", "col_owner": "Owner",
    "col_comments": "Comments", "col_checked": "Checked on", "col_latency": "Latency",
    "col_fingerprint": "Key fingerprint", "col_id": "ID", "col_description": "Description",
    "col_identified": "Identified on", "col_resolved": "Resolved on", "col_solution": "Solution",
    "col_date": "Date", "col_type": "Type",
    "st_not_started": "Not started", "st_running": "In progress", "st_completed": "Completed", "st_blocked": "Blocked",
    "st_planned": "Planned",
    "env_not_deployed": "Not deployed", "env_deploying": "Deploying", "env_deployed": "Deployed",
    "env_failed": "Deployment failed",
    "env_rolled_back": "Rolled back to {release} ({failed} failed)",
    "pb_rolled_back": "rolled back to {release} automatically, verified by the functional tests",
    "env_test": "Test", "env_staging": "Staging", "env_production": "Production",
    "p_model": "Model", "p_vcores": "CPU", "p_ram_gb": "RAM", "p_disk_gb": "Storage", "p_os": "OS",
    "p_zone": "Location", "p_ip": "IP", "p_domain": "Domain name",
    "unit_vcores": "{n} vCores", "unit_gb": "{n} GB",
    "same": "✓", "differs": "≠ differs", "not_observed": "not observed",
    "server_not_observed": "No server observation yet (artifact `{key}`): only the declared values are known.",
    "exp_public": "Public", "exp_internal": "Internal only", "exp_undeclared": "Not declared",
    "obs_open": "open", "obs_closed": "closed", "obs_filtered": "filtered", "obs_none": "not tested",
    "fw_mismatch": "⚠ differs",
    "run_line": "Last run: `{name}` · release {release} · {state} · operator {operator}",
    "no_run": "No deployment has run on this environment.",
    "approved_by": "approved by {name}",
    "outcome_unchanged": "(unchanged)",
    "awaiting": "{state}",
    "svc_documentai": "Google Cloud (Document AI)", "svc_vision": "Google Cloud (Vision AI)",
    "svc_voyageai": "VoyageAI", "svc_anthropic": "Anthropic (Claude)",
    "key_not_checked": "Not checked", "key_ok": "Valid", "key_invalid": "Invalid key",
    "key_forbidden": "Access denied", "key_rate_limited": "Rate limited", "key_quota": "Quota exceeded",
    "key_unreachable": "Service unreachable", "key_transient": "Transient service error",
    "key_misconfigured": "Misconfigured", "key_error": "Error", "key_not_configured": "Not configured",
    "pb_open": "Open", "pb_resolved": "Resolved", "pb_failures": "{n} failures",
    "pb_resolved_by": "step succeeded with release {release}",
    "pb_resolved_by_run": "step succeeded (run {name})",
    "pb_none": "No problem encountered.",
    "mt_none": "No scheduled or recent maintenance.", "mt_scheduler": "scheduler",
    "mt_scheduled": "Scheduled", "mt_running": "Running", "mt_done": "Completed", "mt_failed": "Failed",
    "mt_cancelled": "Cancelled",
    "flow_smoke-api-keys": "API key check", "flow_deploy-environment": "Deployment",
    "flow_security-test": "Security test", "flow_renew-certificates": "Certificate renewal",
    "flow_cost-monitoring": "Cost monitoring",
    "flow_maintenance-certificates": "Certificates", "flow_maintenance-housekeeping": "Docker housekeeping",
    "flow_maintenance-backup": "Backup", "flow_maintenance-restore-drill": "Restore drill",
    "flow_maintenance-drift": "Drift check",
    "mt_what": "Scheduled run ({flow})",
    "mt_what_smoke-api-keys": "Smoke call of every API key of every environment",
    "mt_what_maintenance-certificates": "Check the served certificate (days left, chain, names), renew it under the threshold, test the renewal (dry run)",
    "mt_what_maintenance-housekeeping": "Remove unused images and releases, keeping the current and the previous release",
    "mt_what_maintenance-backup": "Back Qdrant (snapshots) and n8n up off the server, with checksum and retention",
    "mt_what_maintenance-restore-drill": "Restore the latest production backup into test and verify it",
    "mt_what_maintenance-drift": "Compare each server with what the pipeline declares (firewall, ports, release, .env, nginx, certificate, DNS, monitoring)",
    "env_all": "All",
    "note_drift_ok": "Drift check of {env} ({when}): the server is as the pipeline declares it.",
    "note_drift_bad": "Drift check of {env} ({when}): {detail}",
    "next_deploy_env": "Deployment to the {env} environment",
    "next_deploy_release": "Deployment of release {release} to the {env} environment",
    "next_running": "{step} ({env})",
    "next_fix": "Resolve problem {id} ({step}, {env}) then re-run the deployment",
    "next_none": "None: every release is deployed; routine maintenance",
    "ok": "✅", "warn": "⚠️",
    "note_quotas_ok": "Cloud API quotas were verified in production on {when} (every service answers).",
    "note_quotas_bad": "Cloud API quotas must be verified before the production deployment: {detail}.",
    "note_quotas_none": "the production keys have never been checked",
    "note_quotas_confirmed": "Quotas confirmed verified at the production approval ({who}, {when}).",
    "note_quotas_failing": "failing: {services}",
    "note_dns_ok": "Production DNS was configured on {when}, {hours} h before {ref} (≥ 24 h for propagation).",
    "note_dns_short": "Production DNS was configured on {when}, only {hours} h before {ref}: propagation needs 24 h.",
    "note_dns_none": "Production DNS is not configured yet: it must precede the deployment by 24 h.",
    "ref_now": "now", "ref_deploy": "the production deployment of {when}",
    "note_cost_ok": "Cloud cost monitoring is active (deployment `{name}`{last}).",
    "note_cost_last": ", last run: {state} on {when}",
    "note_cost_none": "No cloud cost monitoring is active (no Prefect deployment tagged `cost-monitoring` with an active schedule).",
    "note_docs_ok": "User documentation was confirmed final at the last production approval ({who}, {when}).",
    "note_docs_bad": "User documentation was NOT confirmed final at the last production approval ({who}, {when}).",
    "note_docs_none": "No production approval recorded: user documentation must be confirmed final before the production deployment.",
    "next_rerun": "Re-run the deployment to the {env} environment",
    "server_of": "{env} server ({label})",
    "fw_tested": "Last security test: {when}.",
    "fw_not_tested": "No security test recorded (artifact `{key}`).",
    "none": "-",
    "months": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec",
}

TABLES = {"fr": _FR, "en": _EN}


class Labels:
    """The words of one language: ``labels("col_status")``, ``labels("process", env="Test")``."""

    def __init__(self, lang: str):
        if lang not in TABLES:
            raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGS)}")
        self.lang = lang
        self._table = TABLES[lang]
        self._months = self._table["months"].split()

    def __call__(self, label: str, /, **values: object) -> str:
        text = self._table[label]
        return text.format(**values) if values else text

    def get(self, key: str, default: str) -> str:
        return self._table.get(key, default)

    def datetime(self, value: datetime | None, zone: str | None = None) -> str:
        """'24 mars 2025 14:02 UTC' / '24 Mar 2025 14:02 UTC'; '-' when unknown.

        ``zone``: an IANA time zone (the team's, Europe/Paris) to show the time in, with its abbreviation
        ('24 mars 2025 15:02 CET', '24 juil. 2025 16:02 CEST'), so a reader never converts by hand."""
        if value is None:
            return self._table["none"]
        if zone:
            from zoneinfo import ZoneInfo

            local = value.astimezone(ZoneInfo(zone))
            return f"{local.day} {self._months[local.month - 1]} {local.year} {local:%H:%M} {local.tzname()}"
        value = value.astimezone(timezone.utc)
        return f"{value.day} {self._months[value.month - 1]} {value.year} {value:%H:%M} UTC"

    def env(self, name: str) -> str:
        return self._table.get(f"env_{name}", name)
