"""The reusable machinery below the stages; a stage calls it, it never imports a stage or the dag."""
