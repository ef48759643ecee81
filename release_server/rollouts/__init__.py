"""Update policy: what each installation is offered, staged rollouts, pins and halts."""
