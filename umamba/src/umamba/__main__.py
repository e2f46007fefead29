from umamba.cli import main

raise SystemExit(main())
