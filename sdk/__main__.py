from siglip2_sdk.cli import main

raise SystemExit(main())
