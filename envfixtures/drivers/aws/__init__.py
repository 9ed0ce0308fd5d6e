"""AWS: clients, CloudFormation stacks."""
