"""The catalogue is the seed's list of phases and steps, in the seed's order."""

from technicia_deploy import steps

# The seed's 'Processus de Déploiement - Environnement de Test' table, row by row.
SEED_ROWS = [
    ("Préparation du serveur", ["Installation OS", "Configuration Firewall", "Installation Docker"]),
    ("Déploiement des services", ["Clonage du repository", "Configuration des clés API", "Exécution du script de déploiement"]),
    ("Configuration HTTPS", ["Configuration DNS", "Installation Certbot", "Obtention certificats SSL"]),
    ("Tests post-déploiement", ["Tests fonctionnels", "Tests de performance", "Tests de sécurité"]),
    ("Configuration monitoring", ["Installation du script de monitoring", "Configuration des alertes", "Tests des alertes"]),
]


def test_catalogue_is_the_seed_table_in_order():
    assert [(p.fr, [s.fr for s in p.steps]) for p in steps.PHASES] == SEED_ROWS


def test_step_ids_are_unique_and_belong_to_their_phase():
    ids = [s.id for s in steps.STEPS]
    assert len(ids) == len(set(ids)) == 15
    for phase in steps.PHASES:
        assert all(s.phase_id == phase.id for s in phase.steps)


def test_every_step_has_an_english_label():
    assert all(s.en and s.en != s.fr for s in steps.STEPS)
    assert steps.step("https.dns").label("en") == "DNS configuration"
    assert steps.step("https.dns").label("fr") == "Configuration DNS"


def test_unknown_step_names_the_known_ones():
    try:
        steps.step("server.oss")
    except KeyError as exc:
        assert "server.os" in str(exc)
    else:
        raise AssertionError("expected KeyError")


def test_run_tags():
    assert steps.env_tag("staging") == "env:staging"
    assert steps.release_tag("v1.1.0") == "release:v1.1.0"
    assert steps.step("server.firewall").tag == "step:server.firewall"


def test_a_task_run_is_a_step_by_its_name_or_its_older_step_tag_and_helper_tasks_are_not():
    """What the lock's reaper and the tracking document count as a step (a helper task never makes a run look dead)."""
    from types import SimpleNamespace

    assert steps.step_id_of(SimpleNamespace(name="services.deploy", tags=[])) == "services.deploy"
    assert steps.step_id_of(SimpleNamespace(name="deploy-step-1", tags=["step:services.deploy"])) == "services.deploy"
    assert steps.step_id_of(SimpleNamespace(name="preflight", tags=[])) is None
    assert steps.step_id_of(SimpleNamespace(name="tag-flow-run", tags=None)) is None

