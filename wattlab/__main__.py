from wattlab.cli import main

raise SystemExit(main())
