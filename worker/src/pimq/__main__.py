from pimq.cli import main

raise SystemExit(main())
