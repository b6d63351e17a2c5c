"""Criticizer service: annotations -> critiques with the paper's seven strategies."""
