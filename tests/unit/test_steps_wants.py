"""Probe answers are keyed by step name: a host's steps must not share a name with different probes."""

import pytest

from kbootstrap.engine.steps import CommandStep, Wants


def test_two_steps_with_one_name_and_different_probes_are_refused():
    wants = Wants()
    wants.merge(CommandStep("add member", probe=["test", "a"], command=["true"]).wants())
    wants.merge(CommandStep("add member", probe=["test", "a"], command=["true"]).wants())  # the same probe: fine
    with pytest.raises(ValueError, match="two steps of one host named \\['add member'\\]"):
        wants.merge(CommandStep("add member", probe=["test", "b"], command=["true"]).wants())


def test_every_reset_plan_names_each_step_of_a_host_once(tmp_path, stacked_data, external_data):
    """The reset phases (whole cluster, some workers) build; merging every host's wants raises on a clash."""
    from kbootstrap.model.spec import build_spec
    from kbootstrap.pki.issue import ensure_pki
    from kbootstrap.pki.secrets import ensure_secrets
    from kbootstrap.render import RenderContext
    from kbootstrap.workflows import RESET, Inputs

    for data in (stacked_data, external_data):
        data["certificates"] = {"key_algorithm": "ecdsa-p256"}
        spec = build_spec(data)
        root = tmp_path / spec.cluster.name
        ctx = RenderContext(spec, ensure_pki(spec, root), ensure_secrets(root))
        for nodes in (spec.nodes, spec.workers):
            for phase in RESET.build(Inputs(ctx, nodes)):
                for steps in phase.steps.values():
                    wants = Wants()
                    for step in steps:
                        wants.merge(step.wants())
