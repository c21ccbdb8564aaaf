/**
 * exosphere-nb: the Exosphere side panel, run views and palette commands for JupyterLab 4.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, InputDialog, MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

import { StateManagerClient } from './api';
import { ExospherePanel } from './panel';
import { RunView } from './runview';

const PLUGIN_ID = 'exosphere-nb:plugin';
const CATEGORY = 'Exosphere';

export namespace CommandIDs {
  export const open = 'exosphere:open';
  export const refresh = 'exosphere:refresh';
  export const addConnection = 'exosphere:add-connection';
  export const removeConnection = 'exosphere:remove-connection';
  export const trigger = 'exosphere:trigger';
  export const openRun = 'exosphere:open-run';
  export const toggleAutoRefresh = 'exosphere:toggle-auto-refresh';
  export const cancelRun = 'exosphere:cancel-run';
  export const retryState = 'exosphere:retry-state';
  export const refreshRun = 'exosphere:refresh-run';
}

export const exosphereIcon = new LabIcon({
  name: 'exosphere-nb:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<circle cx="5" cy="5" r="3"/><circle cx="19" cy="5" r="3"/><circle cx="12" cy="19" r="3"/>' +
    '<path d="M6.3 7.2l4.6 9.1 1.8-.9-4.6-9.1zM17.7 7.2l-4.6 9.1-1.8-.9 4.6-9.1z"/>' +
    '</g></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Exosphere workflows in JupyterLab: connections, graphs, runs and live DAGs',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (app: JupyterFrontEnd, palette: ICommandPalette | null, restorer: ILayoutRestorer | null) => {
    const { commands, shell } = app;
    const tracker = new WidgetTracker<MainAreaWidget<RunView>>({ namespace: 'exosphere-nb-run' });

    const openRun = (client: StateManagerClient, namespace: string, runId: string): void => {
      const existing = tracker.find(w => w.content.runId === runId && w.content.client.connection.id === client.connection.id);
      if (existing) {
        shell.activateById(existing.id);
        void existing.content.refresh();
        return;
      }
      const content = new RunView(client, namespace, runId);
      const widget = new MainAreaWidget({ content });
      widget.id = `exo-run-${client.connection.id}-${runId}`;
      widget.title.label = content.title.label;
      widget.title.caption = content.title.caption;
      widget.title.icon = exosphereIcon;
      widget.title.closable = true;
      widget.addClass('exo-run-main');
      void tracker.add(widget);
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    const panel = new ExospherePanel(openRun);
    panel.title.icon = exosphereIcon;
    shell.add(panel, 'left', { rank: 850 });
    if (restorer) {
      restorer.add(panel, 'exosphere-nb-panel');
    }

    const currentRun = (): RunView | null => {
      const w = tracker.currentWidget;
      return w && w.content ? w.content : null;
    };
    tracker.currentChanged.connect(() => {
      commands.notifyCommandChanged(CommandIDs.cancelRun);
      commands.notifyCommandChanged(CommandIDs.retryState);
      commands.notifyCommandChanged(CommandIDs.refreshRun);
    });

    commands.addCommand(CommandIDs.open, {
      label: 'Exosphere: Open Panel',
      caption: 'Show the Exosphere panel: connections, graphs and runs',
      execute: () => shell.activateById(panel.id)
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Exosphere: Refresh',
      execute: async () => {
        shell.activateById(panel.id);
        await panel.refresh();
      }
    });
    commands.addCommand(CommandIDs.addConnection, {
      label: 'Exosphere: Add Remote State Manager…',
      caption: 'Save a state manager URI and key on the Jupyter server',
      execute: () => {
        shell.activateById(panel.id);
        panel.showAddConnection();
      }
    });
    commands.addCommand(CommandIDs.removeConnection, {
      label: 'Exosphere: Forget This Remote State Manager',
      isEnabled: () => panel.connection?.kind === 'remote',
      execute: () => panel.removeCurrentConnection()
    });
    commands.addCommand(CommandIDs.toggleAutoRefresh, {
      label: 'Exosphere: Auto-Refresh Runs',
      isToggled: () => panel.autoRefresh,
      execute: () => {
        panel.setAutoRefresh(!panel.autoRefresh);
        commands.notifyCommandChanged(CommandIDs.toggleAutoRefresh);
      }
    });
    commands.addCommand(CommandIDs.trigger, {
      label: 'Exosphere: Trigger Graph…',
      caption: 'Start a run of a graph of the selected namespace',
      execute: async args => {
        shell.activateById(panel.id);
        let name = (args.graph as string) || '';
        const valid = panel.graphs.filter(g => g.validation_status === 'VALID').map(g => g.name);
        if (!name) {
          if (!valid.length) {
            return;
          }
          const choice = await InputDialog.getItem({ title: 'Trigger which graph?', items: valid });
          if (!choice.button.accept || !choice.value) {
            return;
          }
          name = choice.value;
        }
        panel.openTrigger(name);
      }
    });
    commands.addCommand(CommandIDs.openRun, {
      label: 'Exosphere: Open Run…',
      caption: 'Open a run of the selected namespace by its id',
      execute: async args => {
        if (!panel.client || !panel.namespace) {
          return;
        }
        let runId = (args.runId as string) || '';
        if (!runId) {
          const answer = await InputDialog.getText({ title: 'Open run', placeholder: 'run id' });
          if (!answer.button.accept || !answer.value) {
            return;
          }
          runId = answer.value.trim();
        }
        openRun(panel.client, panel.namespace, runId);
      }
    });
    commands.addCommand(CommandIDs.refreshRun, {
      label: 'Exosphere: Refresh Run',
      isEnabled: () => currentRun() !== null,
      execute: () => currentRun()?.refresh()
    });
    commands.addCommand(CommandIDs.cancelRun, {
      label: 'Exosphere: Cancel Run',
      caption: 'Cancel the states of the current run that have not run yet',
      isEnabled: () => currentRun() !== null,
      execute: () => currentRun()?.cancelRun()
    });
    commands.addCommand(CommandIDs.retryState, {
      label: 'Exosphere: Retry Inspected State',
      isEnabled: () => currentRun() !== null,
      execute: () => currentRun()?.retry()
    });

    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
  }
};

export default plugin;
