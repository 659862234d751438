from cmamd.cli import main

raise SystemExit(main())
